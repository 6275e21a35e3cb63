// Byte pump shared by both sides of ingress. Two sockets go through the shared tunnel
// (src/transport/tunnel.ts: zero-copy splice in the kernel when both have an fd, Node streams otherwise,
// half-close and teardown the same either way). Other duplex streams are joined here with pipe(), which
// gives backpressure and, with allowHalfOpen sockets, half-close; any error destroys both sides.
import { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { joinSockets } from '../transport/tunnel.ts';

export interface SpliceStats {
  /** Bytes that went a -> b and b -> a. */
  aToB: number;
  bToA: number;
  /** Which data path carried the bytes (src/transport/tunnel.ts); 'pipe' for non-socket streams. */
  engine: 'splice' | 'stream' | 'pipe';
}

/** Joins a and b; resolves once both are closed (never rejects: an error is a normal end of a connection). */
export function splice(a: Duplex, b: Duplex): Promise<SpliceStats> {
  const stats: SpliceStats = { aToB: 0, bToA: 0, engine: 'pipe' };
  if (a instanceof Socket && b instanceof Socket && !a.destroyed && !b.destroyed) {
    return new Promise((resolve) =>
      joinSockets(a, b, {
        onClose: (info) => resolve({ aToB: info.aRead, bToA: info.aWritten, engine: info.engine }),
      }),
    );
  }
  if (a.destroyed || b.destroyed) {
    a.destroy();
    b.destroy();
    return Promise.resolve(stats);
  }
  return new Promise((resolve) => {
    let open = 2;
    const done = () => {
      open -= 1;
      if (open === 0) resolve(stats);
    };
    const fail = () => {
      a.destroy();
      b.destroy();
    };
    a.on('data', (c: Buffer) => {
      stats.aToB += c.length;
    });
    b.on('data', (c: Buffer) => {
      stats.bToA += c.length;
    });
    a.on('error', fail);
    b.on('error', fail);
    a.once('close', done);
    b.once('close', done);
    // When both directions have ended the sockets close by themselves (allowHalfOpen only keeps
    // the writable side open until we end it, which pipe does).
    a.pipe(b);
    b.pipe(a);
  });
}
