// vsock emulated over Unix sockets: `<dir>/<cid>/<port>.sock`. Two processes on one machine,
// even in different network namespaces (Unix sockets are filesystem objects), talk as host and enclave do.
import { mkdirSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { loadNative } from '../native.ts';
import { connectWithRetry } from './connect-retry.ts';
import type { ListenOptions, Transport } from './types.ts';

export function socketPath(dir: string, cid: number, port: number): string {
  return join(dir, String(cid), `${port}.sock`);
}

export class EmulatedTransport implements Transport {
  readonly kind = 'emulated' as const;
  constructor(
    readonly dir: string,
    /** The CID of the side using this transport; listen() binds under it. */
    readonly ownCid: number,
  ) {}

  async listen(port: number, opts: ListenOptions = {}): Promise<Server> {
    const path = socketPath(this.dir, this.ownCid, port);
    mkdirSync(join(this.dir, String(this.ownCid)), { recursive: true, mode: 0o700 });
    // A stale socket file from a crashed run would make bind fail with EADDRINUSE, so it is removed;
    // but a live one belongs to a listener that is still there, and taking its path would silently cut
    // it off: refuse, as vsock's bind does.
    if (await isLive(path)) {
      throw Object.assign(new Error(`listen EADDRINUSE: vsock port ${port} (${path}) is already in use`), {
        code: 'EADDRINUSE',
      });
    }
    return listenUnix(path, opts);
  }

  /**
   * A non-blocking connect to a Unix listener whose backlog is full fails at once with EAGAIN (vsock
   * and TCP queue or refuse instead), as a burst of tunnels can make it: tried again with a short
   * backoff until timeoutMs has passed.
   */
  connectFd(cid: number, port: number, timeoutMs: number): Promise<number> {
    const path = socketPath(this.dir, cid, port);
    const deadline = Date.now() + timeoutMs;
    return connectWithRetry(() => loadNative().unixConnect(path, Math.max(1, deadline - Date.now())), {
      deadline,
      gone: () => false,
      firstDelayMs: 1,
      maxDelayMs: 50,
      retriable: (err) => err.code === 'EAGAIN',
    });
  }

  connect(cid: number, port: number): Promise<Socket> {
    const path = socketPath(this.dir, cid, port);
    return new Promise((resolve, reject) => {
      const sock = netConnect({ path, allowHalfOpen: true });
      sock.once('error', reject);
      sock.once('connect', () => {
        sock.off('error', reject);
        resolve(sock);
      });
    });
  }
}

/** True when something accepts connections on the Unix socket at `path`. */
/** A half-open-capable server on the Unix socket `path`, replacing a stale socket file left there. */
export function listenUnix(path: string, opts: ListenOptions = {}): Promise<Server> {
  rmSync(path, { force: true });
  const server = createServer({ allowHalfOpen: true, pauseOnConnect: opts.pauseOnConnect ?? false });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve(server);
    });
  });
}

function isLive(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = netConnect({ path });
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}
