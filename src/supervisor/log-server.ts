// The log stream on vsock 17001 (docs/reference/enclaver.md, "Log port"): each reader gets the ring from its
// oldest retained byte, then follows live. Readers are independent: each has its own cursor, and at most one
// chunk is queued in its socket at a time (the next is written on 'drain'). A reader that falls more than a
// ring behind skips ahead to the oldest retained byte and is told so by a marker line; odyn skips silently.
// Nothing a reader does can make the ring, or the app, wait.
import type { Server, Socket } from 'node:net';
import type { LogRing } from '../log/ring.ts';
import type { ReaderLimit } from './reader-limit.ts';

/** Largest write handed to a reader's socket at once. */
const CHUNK = 64 * 1024;

export function skipMarker(skipped: number): string {
  return `[cloister] this log reader fell behind: ${skipped} bytes skipped\n`;
}

export class LogServer {
  private readonly readers = new Set<Socket>();

  constructor(
    private readonly ring: LogRing,
    /** How much backlog a new reader is replayed (log.buffer_bytes; may be less than the ring). */
    private readonly replayBytes = ring.capacity,
  ) {}

  /** Serve every connection the server accepts (up to `limit`'s readers at once). */
  serve(server: Server, limit?: ReaderLimit): void {
    server.on('connection', (sock) => {
      if (!limit || limit.admit(sock)) this.addReader(sock);
    });
  }

  addReader(sock: Socket): void {
    this.readers.add(sock);
    let cursor = Math.max(this.ring.start, this.ring.end - this.replayBytes);
    let waitingForDrain = false;
    let lastByte = 0x0a;

    const pump = (): void => {
      while (!waitingForDrain && !sock.destroyed && cursor < this.ring.end) {
        const { data, next, skipped } = this.ring.read(cursor, CHUNK);
        let out = data;
        if (skipped > 0) {
          // Start the marker on a line of its own so it cannot be mistaken for part of an app line.
          const marker = `${lastByte === 0x0a ? '' : '\n'}${skipMarker(skipped)}`;
          out = Buffer.concat([Buffer.from(marker), data]);
        }
        cursor = next;
        if (out.length === 0) break;
        lastByte = out[out.length - 1]!;
        if (!sock.write(out)) waitingForDrain = true;
      }
    };

    const unsubscribe = this.ring.onAppend(pump);
    sock.on('drain', () => {
      waitingForDrain = false;
      pump();
    });
    // The host sends nothing on this port; discard input and keep writing after its FIN.
    sock.resume();
    sock.on('error', () => sock.destroy());
    sock.on('close', () => {
      unsubscribe();
      this.readers.delete(sock);
    });
    pump();
  }

  closeReaders(): void {
    for (const sock of this.readers) sock.destroy();
    this.readers.clear();
  }
}
