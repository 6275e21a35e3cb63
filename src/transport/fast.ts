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
 * What a service's fast path holds open: accepted handles not yet handed on (their waits can be woken)
 * and running tunnels (they can be cancelled). close() ends them all, as destroying the sockets did.
 */
export class FastConnections {
  private readonly waiting = new Set<AcceptedHandle>();
  private readonly tunnels = new Set<() => void>();
  closed = false;

  constructor(private readonly native: NativeAddon) {}

  /** A handle the fast path waits on (peek, frame); done() when it is handed on or closed. */
  wait(h: AcceptedHandle): () => void {
    this.waiting.add(h);
    return () => this.waiting.delete(h);
  }

  /** A running tunnel's cancel; the returned function forgets it when the tunnel ends. */
  tunnel(cancel: () => void): () => void {
    this.tunnels.add(cancel);
    return () => this.tunnels.delete(cancel);
  }

  get size(): number {
    return this.waiting.size + this.tunnels.size;
  }

  /** Wakes every wait (it then reads EOF and lets go) and cancels every tunnel. */
  closeAll(): void {
    this.closed = true;
    for (const h of this.waiting) {
      try {
        this.native.shutdownFd(h.fd);
      } catch {
        // already gone
      }
    }
    for (const cancel of [...this.tunnels]) cancel();
  }
}
