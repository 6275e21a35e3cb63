// Joins two sockets into one tunnel: bytes both ways, half-close carried across (one side's FIN becomes
// a shutdown of the other's write side, the other direction keeps flowing), and an error, reset or idle
// timeout on either side tearing down both.
//
// Two engines, same semantics:
// - splice (default when the native addon has it and both sockets are plain TCP/Unix sockets with an
//   fd): after handing over whatever Node already read, the kernel moves the bytes socket -> pipe ->
//   socket (native/src/splice.c spliceJoin), event-driven on this loop, never through JS.
// - stream: Node's own pipe() with backpressure. Used for TLS sockets or anything without an fd, when
//   the addon is missing, when a side already ended, or with CLOISTER_TUNNEL_ENGINE=stream.
import type { Socket } from 'node:net';
import { loadNative, type NativeAddon, type NativeError, type SpliceHandle } from '../native.ts';
import {
  eofRead,
  raiseWriteHighWaterMark,
  spliceableHandleFd,
  stopReadingForever,
} from './node-internals.ts';

export type TunnelEngine = 'splice' | 'stream';

export interface TunnelOptions {
  /** Destroy both sides after this long with no traffic (0 = never). */
  idleTimeoutMs?: number;
  /** Called once when both sides are closed. `engine` says which data path carried the tunnel. */
  onClose?: (info: { aRead: number; aWritten: number; error: Error | null; engine: TunnelEngine }) => void;
  /** Force the stream engine ('auto', the default, splices whenever it can). */
  engine?: 'auto' | 'stream';
}

const WRITE_HWM = 256 * 1024;

let addon: Pick<NativeAddon, 'spliceJoin' | 'spliceCancel'> | null | undefined;
function spliceAddon(): Pick<NativeAddon, 'spliceJoin' | 'spliceCancel'> | null {
  if (addon === undefined) {
    try {
      addon = loadNative();
    } catch {
      addon = null; // no addon (a bare checkout): the stream engine carries every tunnel
    }
  }
  return addon;
}

/** The fd the kernel can splice, or -1: a plain TCP or Unix stream socket, open both ways, nothing queued. */
function spliceableFd(s: Socket): number {
  if ((s as Socket & { encrypted?: boolean }).encrypted || s.connecting || s.destroyed) return -1;
  const fd = spliceableHandleFd(s);
  if (fd === undefined || eofRead(s) || !s.writable || s.writableLength > 0) return -1;
  return fd;
}

export function joinSockets(a: Socket, b: Socket, opts: TunnelOptions = {}): void {
  const native =
    opts.engine === 'stream' || process.env.CLOISTER_TUNNEL_ENGINE === 'stream' ? null : spliceAddon();
  if (native) {
    const fa = spliceableFd(a);
    const fb = fa < 0 ? -1 : spliceableFd(b);
    if (fa >= 0 && fb >= 0) {
      spliceJoin(native, a, b, fa, fb, opts);
      return;
    }
  }
  streamJoin(a, b, opts);
}

function spliceJoin(
  native: Pick<NativeAddon, 'spliceJoin' | 'spliceCancel'>,
  a: Socket,
  b: Socket,
  fa: number,
  fb: number,
  opts: TunnelOptions,
): void {
  let firstError: Error | null = null;
  let pump: SpliceHandle | null = null;
  let ended = false; // the pump has reported (or never started)
  let closed = 0;
  let aToB = 0;
  let bToA = 0;
  const teardown = (err?: Error | null) => {
    if (err && !firstError) firstError = err;
    if (pump && !ended) native.spliceCancel(pump);
    a.destroy();
    b.destroy();
  };
  for (const s of [a, b]) {
    s.on('error', (err) => teardown(err));
    // Someone else destroying a side (the proxy's close(), a 'close' from the peer) ends the pump.
    s.on('close', () => {
      teardown();
      if (++closed === 2)
        opts.onClose?.({
          aRead: a.bytesRead + aToB,
          aWritten: a.bytesWritten + bToA,
          error: firstError,
          engine: 'splice',
        });
    });
    s.setTimeout(0); // Node sees no traffic any more; the pump keeps the idle timer
    s.setNoDelay?.(true);
    // Detach Node: stop its reads and make sure nothing (resume(), read()) starts them again.
    stopReadingForever(s);
  }
  // Bytes Node read before the handover go first, through Node; the pump starts once they are written.
  let pending = 1;
  const go = () => {
    if (--pending > 0 || a.destroyed || b.destroyed) return;
    try {
      pump = native.spliceJoin(fa, fb, opts.idleTimeoutMs ?? 0, (err, ab, ba) => {
        ended = true;
        aToB = ab;
        bToA = ba;
        if (err && err.code !== 'ECANCELED')
          teardown(err.code === 'ETIMEDOUT' ? new Error(`idle for ${opts.idleTimeoutMs} ms`) : err);
        else teardown();
      });
    } catch (e) {
      ended = true;
      teardown(e as NativeError);
    }
  };
  for (const [from, to] of [
    [a, b],
    [b, a],
  ] as const) {
    for (let chunk = from.read() as Buffer | null; chunk !== null; chunk = from.read() as Buffer | null) {
      pending++;
      to.write(chunk, go);
    }
  }
  go();
}

export interface FdTunnelOptions {
  idleTimeoutMs?: number;
  /** Sent to A (B) before any tunnel byte, not counted: the proxy's "200", the relay's "Ok", a PROXY header. */
  greetA?: Uint8Array;
  greetB?: Uint8Array;
  /** Called once when the pump has ended (both fds then closed by it). */
  onClose?: (info: { aToB: number; bToA: number; error: Error | null }) => void;
}

/**
 * Joins two raw connected fds with the splice pump (the fast path, transport/fast.ts): same semantics as
 * joinSockets' splice engine, without a net.Socket on either side. The pump works on dup()s, so the
 * caller closes its own fds (or handles) right after this returns. Returns the tunnel's cancel().
 */
export function joinFds(
  native: Pick<NativeAddon, 'spliceJoin' | 'spliceCancel'>,
  fa: number,
  fb: number,
  opts: FdTunnelOptions = {},
): () => void {
  let ended = false;
  const pump = native.spliceJoin(
    fa,
    fb,
    opts.idleTimeoutMs ?? 0,
    (err, aToB, bToA) => {
      ended = true;
      const error =
        err && err.code !== 'ECANCELED'
          ? err.code === 'ETIMEDOUT'
            ? new Error(`idle for ${opts.idleTimeoutMs} ms`)
            : err
          : null;
      opts.onClose?.({ aToB, bToA, error });
    },
    opts.greetA ?? null,
    opts.greetB ?? null,
  );
  return () => {
    if (!ended) native.spliceCancel(pump);
  };
}

function streamJoin(a: Socket, b: Socket, opts: TunnelOptions): void {
  let firstError: Error | null = null;
  let closed = 0;
  const teardown = (err?: Error) => {
    if (err && !firstError) firstError = err;
    a.destroy();
    b.destroy();
  };
  for (const [s, other] of [
    [a, b],
    [b, a],
  ] as const) {
    s.on('error', (err) => teardown(err));
    s.on('close', () => {
      // A side that closed before finishing both directions was cut off: the tunnel cannot go on.
      // One that closed cleanly has already passed its FIN on; let the other side flush and close.
      if (!s.readableEnded || !s.writableFinished) other.destroy();
      if (++closed === 2)
        opts.onClose?.({ aRead: a.bytesRead, aWritten: a.bytesWritten, error: firstError, engine: 'stream' });
    });
    if (opts.idleTimeoutMs) {
      s.setTimeout(opts.idleTimeoutMs, () => teardown(new Error(`idle for ${opts.idleTimeoutMs} ms`)));
    }
    s.setNoDelay?.(true);
    // Node's default 16 KiB write buffer pauses the reading side after every 64 KiB read; 256 KiB lets a
    // few reads queue while the kernel drains (fewer pause/resume round trips, ~+20% throughput here)
    // and still bounds what a stalled reader can hold: about 2 x 320 KiB per tunnel per side.
    raiseWriteHighWaterMark(s, WRITE_HWM);
  }
  a.pipe(b);
  b.pipe(a);
}
