// The app status stream on vsock 17000, odyn's protocol (docs/reference/enclaver.md, "Status port") with its
// bugs fixed: each line is JSON.stringify'd (a fatal error text with quotes or newlines stays valid JSON),
// and `signaled` carries the signal as a number (what the stock enclaver-run parses, as i32) plus its name.
// Every new reader gets the current status at once, then one line per change; cloister never closes it.
import type { Server, Socket } from 'node:net';
import { constants } from 'node:os';
import { STATUS_LINE_MAX } from '../constants.ts';
import type { ReaderLimit } from './reader-limit.ts';

export type AppStatus =
  /** Before the app was spawned (services still starting). Not an odyn status: a stock host skips it. */
  | { status: 'starting' }
  | { status: 'running'; pid?: number; restarts?: number }
  /** The app ended and the restart policy will start it again after `delay_ms`. Not an odyn status. */
  | {
      status: 'restarting';
      /** A failed start (boot-time secrets) that will be tried again: what failed. */
      error?: string;
      code?: number;
      signal?: number;
      signal_name?: string;
      restarts: number;
      delay_ms: number;
    }
  | { status: 'exited'; code: number }
  | { status: 'signaled'; signal: number; signal_name: string }
  | { status: 'fatal'; error: string };

export { STATUS_LINE_MAX };

/** A reader that stopped reading gets cut off rather than buffered without bound. */
const MAX_QUEUED_BYTES = 64 * 1024;

export function signalNumber(name: string): number {
  return (constants.signals as Record<string, number>)[name] ?? 0;
}

export function signalName(signo: number): string {
  for (const [name, n] of Object.entries(constants.signals)) if (n === signo) return name;
  return `SIG${signo}`;
}

/** One status as a JSON line that fits the host's 1024-byte limit (a long error text is shortened). */
export function formatStatus(s: AppStatus): string {
  const line = `${JSON.stringify(s)}\n`;
  if (Buffer.byteLength(line) <= STATUS_LINE_MAX || s.status !== 'fatal') return line;
  // Longest prefix of the error (in code points, so none is split) whose line still fits.
  const chars = Array.from(s.error);
  const fits = (n: number) =>
    `${JSON.stringify({ status: 'fatal', error: `${chars.slice(0, n).join('')}…` })}\n`;
  let lo = 0;
  let hi = chars.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (Buffer.byteLength(fits(mid)) <= STATUS_LINE_MAX) lo = mid;
    else hi = mid - 1;
  }
  return fits(lo);
}

/**
 * Reads one status line, from cloister or from odyn, for a host-side reader. odyn's `signaled` names the
 * signal as a string ("SIGTERM") in `signal`; it comes back with the number too. Unknown or malformed
 * lines give null (a reader skips them, as enclaver-run does). odyn's unescaped `fatal` text can be
 * invalid JSON; such a line is still recognised as fatal with the raw text as its error.
 */
export function parseStatusLine(line: string): AppStatus | null {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    const m = /^\{\s*"status"\s*:\s*"fatal"\s*,\s*"error"\s*:\s*"([\s\S]*)"\s*\}\s*$/.exec(line);
    return m ? { status: 'fatal', error: m[1]! } : null;
  }
  if (typeof v !== 'object' || v === null) return null;
  const o = v as Record<string, unknown>;
  const int = (x: unknown) => (Number.isInteger(x) ? (x as number) : undefined);
  switch (o.status) {
    case 'starting':
      return { status: 'starting' };
    case 'running': {
      const out: AppStatus = { status: 'running' };
      if (int(o.pid) !== undefined) out.pid = int(o.pid);
      if (int(o.restarts) !== undefined) out.restarts = int(o.restarts);
      return out;
    }
    case 'restarting': {
      const restarts = int(o.restarts);
      const delay = int(o.delay_ms);
      if (restarts === undefined || delay === undefined) return null;
      const out: AppStatus = { status: 'restarting', restarts, delay_ms: delay };
      if (int(o.code) !== undefined) out.code = int(o.code);
      if (int(o.signal) !== undefined) {
        out.signal = int(o.signal);
        out.signal_name = typeof o.signal_name === 'string' ? o.signal_name : signalName(out.signal!);
      }
      return out;
    }
    case 'exited': {
      const code = int(o.code);
      return code === undefined ? null : { status: 'exited', code };
    }
    case 'signaled': {
      if (typeof o.signal === 'string') {
        const n = signalNumber(o.signal);
        return n === 0 ? null : { status: 'signaled', signal: n, signal_name: o.signal };
      }
      const n = int(o.signal);
      if (n === undefined) return null;
      return {
        status: 'signaled',
        signal: n,
        signal_name: typeof o.signal_name === 'string' ? o.signal_name : signalName(n),
      };
    }
    case 'fatal':
      return typeof o.error === 'string' ? { status: 'fatal', error: o.error } : null;
    default:
      return null;
  }
}

export class StatusBoard {
  private current: AppStatus = { status: 'starting' };
  private readonly readers = new Set<Socket>();
  private readonly changeListeners = new Set<(s: AppStatus) => void>();

  get status(): AppStatus {
    return this.current;
  }

  set(next: AppStatus): void {
    this.current = next;
    const line = formatStatus(next);
    for (const sock of this.readers) this.send(sock, line);
    for (const fn of this.changeListeners) fn(next);
  }

  onChange(fn: (s: AppStatus) => void): void {
    this.changeListeners.add(fn);
  }

  /** Serve every connection the server accepts (up to `limit`'s readers at once). */
  serve(server: Server, limit?: ReaderLimit): void {
    server.on('connection', (sock) => {
      if (!limit || limit.admit(sock)) this.addReader(sock);
    });
  }

  addReader(sock: Socket): void {
    this.readers.add(sock);
    // The host never sends anything meaningful here: discard whatever arrives, keep writing after its FIN.
    sock.resume();
    sock.on('error', () => sock.destroy());
    sock.on('close', () => this.readers.delete(sock));
    this.send(sock, formatStatus(this.current));
  }

  /** Drop every reader connection (cloister is exiting). */
  closeReaders(): void {
    for (const sock of this.readers) sock.destroy();
    this.readers.clear();
  }

  private send(sock: Socket, line: string): void {
    if (sock.destroyed || !sock.writable) return;
    if (sock.writableLength > MAX_QUEUED_BYTES) {
      sock.destroy();
      return;
    }
    sock.write(line);
  }
}
