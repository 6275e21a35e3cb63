// Timeouts for all of cloister, in one place: a race of some work against a deadline (withDeadline), the
// same for the next event of an emitter (onceWithin: events.once with a signal), and a pause that a stop
// cuts short (delayUnless). Each clears its timer when it settles, so a race that was won leaves nothing
// behind: a pending timer keeps a stopping process alive, or fires into a request long finished. (That
// is why none uses AbortSignal.timeout: its timer cannot be cleared, and on a per-connection path each
// one would stay pending for its whole length.)
import { once } from 'node:events';

/**
 * `work`, or a rejection with `onTimeout()` after `ms` milliseconds, whichever comes first. `onTimeout`
 * may also cancel the work (destroy a socket, remove listeners): it runs only when the deadline wins.
 */
export async function withDeadline<T>(work: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

export interface OnceWithinOptions {
  /** Events that end the wait as a failure (e.g. 'end', 'close': the peer went away first). */
  endsOn?: string[];
  /** The error for an `endsOn` event. */
  gone?: () => Error;
}

/**
 * The arguments of `emitter`'s next `event` within `ms`. Rejects with the 'error' it emits meanwhile
 * (events.once), with `opts.gone()` on one of `opts.endsOn`, or with `onTimeout()`. Every listener is
 * removed once it settles (events.once with an AbortSignal).
 */
export async function onceWithin(
  emitter: NodeJS.EventEmitter,
  event: string,
  ms: number,
  onTimeout: () => Error,
  opts: OnceWithinOptions = {},
): Promise<unknown[]> {
  const ac = new AbortController();
  const { signal } = ac;
  const waits: Promise<unknown[]>[] = [once(emitter, event, { signal })];
  for (const end of opts.endsOn ?? []) {
    waits.push(
      once(emitter, end, { signal }).then(() => {
        throw opts.gone?.() ?? new Error(`${end} before ${event}`);
      }),
    );
  }
  try {
    return await withDeadline(Promise.race(waits), ms, onTimeout);
  } finally {
    // The waits that lost reject with an AbortError here, inside the races that already settled.
    ac.abort();
  }
}

/** Waits `ms`, or less when `until` settles first (a stop); the timer is cleared either way. */
export async function delayUnless(ms: number, until: Promise<unknown>): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([new Promise((r) => (timer = setTimeout(r, ms))), until]);
  } finally {
    clearTimeout(timer);
  }
}
