// Live connections of a server, in one place for every service of cloister: a service adds each socket
// (and whatever it opened for it) here, and its close() waits for them up to a grace period, then cuts
// off the stragglers; its destroy() cuts them off at once. See src/service.ts for the contract.
import type { Server as HttpServer } from 'node:http';
import type { Server } from 'node:net';
import type { Duplex } from 'node:stream';
import { delayUnless } from './deadline.ts';

/** What a ConnectionSet tracks: a stream, or anything that closes like one (a fast-path connection). */
export interface Closable {
  once(event: 'close', listener: () => void): unknown;
  destroy(): unknown;
}

/** Tracks live connections so close() can wait for them, then cut off the stragglers. */
export class ConnectionSet {
  private readonly live = new Set<Closable>();
  private drained: (() => void) | null = null;
  private destroyed = false;

  /** Tracks each stream until it closes. After destroyAll(), a stream added is destroyed at once. */
  add(...streams: Closable[]): void {
    for (const s of streams) {
      if (this.destroyed) {
        s.destroy();
        continue;
      }
      if (this.live.has(s)) continue;
      this.live.add(s);
      s.once('close', () => {
        this.live.delete(s);
        if (this.live.size === 0) this.drained?.();
      });
    }
  }

  get size(): number {
    return this.live.size;
  }

  /** Waits up to graceMs for every connection to finish, then destroys what is left. */
  async drain(graceMs: number): Promise<void> {
    if (this.live.size > 0 && graceMs > 0) {
      await delayUnless(
        graceMs,
        new Promise<void>((resolve) => {
          this.drained = resolve;
        }),
      );
      this.drained = null;
    }
    for (const s of this.live) s.destroy();
    this.live.clear();
  }

  /**
   * Destroys every connection now, and every one added later. Without an error: an 'error' event on a
   * stream nobody listens to would be an uncaught exception (the reason is the service's to log).
   */
  destroyAll(): void {
    this.destroyed = true;
    for (const s of this.live) s.destroy();
    this.live.clear();
    this.drained?.();
  }
}

/**
 * Tracks every connection of `server` in `conns`. For an HTTP server, also: once `closing()` is true, a
 * response that finishes closes its connection (Node keeps a kept-alive connection open after
 * server.close() until its keep-alive timeout, so a graceful close would wait that long for nothing).
 */
export function trackConnections(
  server: Server | HttpServer,
  conns: ConnectionSet,
  closing?: () => boolean,
): void {
  server.on('connection', (s: Duplex) => conns.add(s));
  if (closing && 'closeIdleConnections' in server) {
    const http = server as HttpServer;
    http.on('request', (_req, res) => {
      res.once('finish', () => {
        if (closing()) setImmediate(() => http.closeIdleConnections());
      });
    });
  }
}

/**
 * Stops a server accepting and resolves once Node reports it closed (after its last connection has
 * gone). An HTTP server's idle kept-alive connections are closed at once. Never rejects: a server that
 * was not listening is closed already.
 */
export function closeServer(server: Server | HttpServer): Promise<void> {
  return new Promise<void>((resolve) => {
    server.close(() => resolve());
    if ('closeIdleConnections' in server) (server as HttpServer).closeIdleConnections();
  });
}
