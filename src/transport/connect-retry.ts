// Connects that are worth retrying with backoff, in one loop: both sides of ingress connect to
// something that may still be starting (the enclave while it boots, the app inside it), on both
// connection paths (a net.Socket, or a raw fd on the fast path, src/transport/fast.ts); and the
// emulated transport's raw connect meets a Unix listener whose backlog is full (EAGAIN).
import { setTimeout as sleep } from 'node:timers/promises';

export interface RetryOptions {
  /** Give up (rethrow the last error) when the next try would start after this time (ms since epoch). */
  deadline: number;
  /** Give up now: the client went away. */
  gone: () => boolean;
  /** The backoff starts at firstDelayMs (default 25 ms) and doubles up to this. */
  maxDelayMs: number;
  firstDelayMs?: number;
  /** Which failures are worth another try (default: all). */
  retriable?: (err: NodeJS.ErrnoException) => boolean;
}

/** connect(), retried with backoff as `opts` says. */
export async function connectWithRetry<S>(connect: () => Promise<S>, opts: RetryOptions): Promise<S> {
  let delay = opts.firstDelayMs ?? 25;
  for (;;) {
    try {
      return await connect();
    } catch (err) {
      const again = opts.retriable?.(err as NodeJS.ErrnoException) ?? true;
      if (!again || Date.now() + delay > opts.deadline || opts.gone()) throw err;
      await sleep(delay);
      delay = Math.min(delay * 2, opts.maxDelayMs);
    }
  }
}
