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

import { channel } from 'node:diagnostics_channel';
import { EventEmitter } from 'node:events';
import type { Server } from 'node:net';
import { loadNative, type NativeAddon } from '../native.ts';
import { type AcceptedHandle, takeConnections as takeFromServer } from './node-internals.ts';
import { type FdTunnelOptions, joinFds } from './tunnel.ts';

export type { AcceptedHandle } from './node-internals.ts';

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
 * Each connection the fast path keeps is published here as `{ server }`, as Node publishes the Sockets
 * its servers make on `net.server.socket`: how a test (or a debugger) sees a connection arrive that
 * never becomes a Socket. Free when nobody subscribes.
 */
export const fastConnectionChannel = channel('cloister:fast-connection');

/**
 * Offers each connection `server` accepts to `take` first, as a raw handle (see node-internals.ts
 * takeConnections); returns the function that hands a kept one back to the server's Node path.
 */
export function takeConnections(
  server: Server,
  take: (client: AcceptedHandle) => boolean,
): (client: AcceptedHandle) => void {
  return takeFromServer(server, (client) => {
    const kept = take(client);
    if (kept && fastConnectionChannel.hasSubscribers) fastConnectionChannel.publish({ server });
    return kept;
  });
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
  private tunnel(cancel: () => void): void {
    this.cancel = cancel;
    if (this.destroyed) cancel();
  }

  /**
   * Joins the accepted connection to `upstream` (a connected raw fd, taken over here in every case) with
   * the splice pump; the connection finishes when the tunnel ends. If destroy() came first, both are
   * closed instead (false). If the pump cannot start, upstream is closed and the error thrown: the
   * handle is still the caller's, to answer on or drop.
   */
  join(upstream: number, opts: FdTunnelOptions = {}): boolean {
    if (this.destroyed) {
      this.native.closeFd(upstream);
      this.drop();
      return false;
    }
    try {
      this.tunnel(
        joinFds(this.native, this.handle.fd, upstream, {
          ...opts,
          onClose: (info) => {
            opts.onClose?.(info);
            this.finish();
          },
        }),
      );
    } finally {
      // The pump holds its own copies of both fds.
      this.native.closeFd(upstream);
    }
    this.handle.close();
    return true;
  }

  /** Closes the accepted connection: the fast path is done with it. */
  drop(): void {
    this.handle.close();
    this.finish();
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
