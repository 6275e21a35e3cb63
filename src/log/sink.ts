// Where the enclave's one log stream goes: the app's stdout+stderr and cloister's own pino lines, in
// arrival order, into the ring served on vsock 17001 and (optionally) echoed on cloister's stdout.
// The echo never blocks: it writes through an asynchronous SonicBoom with a bounded buffer, so a stuck
// console drops console lines rather than stalling the supervisor (and with it the app's pipes).
import { pino } from 'pino';
import type { LogRing } from './ring.ts';

/** Pending console bytes beyond which new lines are dropped from the echo (the ring still has them). */
const CONSOLE_MAX_PENDING = 1024 * 1024;

export interface ConsoleEcho {
  write(data: Buffer): boolean;
  flushSync(): void;
}

/** Cloister's stdout as a non-blocking, bounded writer. */
export function openConsoleEcho(fd = 1): ConsoleEcho {
  // contentMode 'buffer': app output is bytes, not necessarily UTF-8; pass it through untouched.
  const opts = { fd, sync: false, maxLength: CONSOLE_MAX_PENDING, contentMode: 'buffer' };
  const dest = pino.destination(opts as Parameters<typeof pino.destination>[0]) as unknown as {
    write(data: Buffer): boolean;
    flushSync(): void;
    on(event: 'error', fn: (err: Error) => void): void;
  };
  // A console that went away (EPIPE, EBADF) must not take the supervisor down with it.
  dest.on('error', () => {});
  return {
    write: (data) => dest.write(data),
    flushSync: () => {
      try {
        dest.flushSync();
      } catch {
        // Nothing useful to do when the console is gone.
      }
    },
  };
}

export class LogSink {
  constructor(
    readonly ring: LogRing | null,
    private readonly echo: ConsoleEcho | null,
  ) {}

  /** pino calls this with one complete JSON line; the app output path calls it with whole lines too. */
  write(chunk: string | Buffer): boolean {
    const data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    this.ring?.append(data);
    // SonicBoom's maxLength guard drops (never queues) what a stuck console can't take.
    this.echo?.write(data);
    return true;
  }

  flushSync(): void {
    this.echo?.flushSync();
  }
}
