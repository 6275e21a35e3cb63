// The per-connection fast path (issue 10, "Per-connection cost"). A tunnel through cloister used to
// cost each process two net.Socket objects, Node's stream state, an HTTP parser or a frame reader in
// JS, and several loop turns, about 370 µs of CPU per tunnel per process, most of it Node's own. On
// this path a connection the server accepts stays a raw libuv handle (node-internals.ts
// takeConnections), its first bytes are peeked or read exactly by the addon (native/src/fdwait.c),
// the other side is connected by the addon as a raw fd, and the splice pump joins the two
// (tunnel.ts joinFds). JS only decides: the policy, the relay frame, metrics. Anything unusual (a
// partial or non-CONNECT request head, an error to answer) goes back to the Node path it always took.
//
// CLOISTER_CONNECTION_PATH=node turns it off (every connection through net.Socket as before), for
// before/after comparisons from one tree (bench/egress.ts, bench/ingress.ts) and as an escape hatch.
import { EventEmitter } from 'node:events';
import { loadNative, type NativeAddon } from '../native.ts';
import type { AcceptedHandle } from './node-internals.ts';

export { type AcceptedHandle, takeConnections } from './node-internals.ts';

/** The addon when the fast path is on and possible, else null (then every connection takes the Node path). */
export function fastPathAddon(): NativeAddon | null {
  if (process.env.CLOISTER_CONNECTION_PATH === 'node' || process.env.CLOISTER_TUNNEL_ENGINE === 'stream')
    return null;
  try {
    return loadNative();
  } catch {
    return null;
  }
}

/**
 * One connection on the fast path, as a service's ConnectionSet (src/connections.ts) tracks it: 'close'
 * once the fast path is done with it (its tunnel ended, or it was answered, closed or handed to Node,
 * which then tracks the Socket it makes), and destroy() to cut it off: a wait on its first bytes is woken
 * (it then reads EOF and lets go), a running tunnel is cancelled.
 */
export class FastConnection extends EventEmitter {
  destroyed = false;
  private cancel: (() => void) | null = null;
  private done = false;

  constructor(
    private readonly native: NativeAddon,
    readonly handle: AcceptedHandle,
  ) {
    super();
  }

  /** The connection's tunnel is running: destroy() cancels it (at once if destroy() came first). */
  tunnel(cancel: () => void): void {
    this.cancel = cancel;
    if (this.destroyed) cancel();
  }

  /** The fast path is done with the connection. */
  finish(): void {
    if (this.done) return;
    this.done = true;
    this.emit('close');
  }

  destroy(): void {
    if (this.destroyed || this.done) return;
    this.destroyed = true;
    if (this.cancel) {
      this.cancel();
      return;
    }
    try {
      this.native.shutdownFd(this.handle.fd);
    } catch {
      // the peer is gone already: the wait ends by itself
    }
  }
}
