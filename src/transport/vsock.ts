// AF_VSOCK through the native addon. The addon only makes the fd (socket, bind, listen, connect);
// the bytes then flow through Node's own stream machinery: the fd is adopted by a libuv Pipe handle
// (libuv's stream code works on any stream socket, while net.Server.listen({fd}) refuses a vsock fd
// because libuv only guesses TCP and Unix sockets). So callers get real net.Server / net.Socket
// objects with backpressure and half-close, exactly like the emulated transport's Unix sockets.
import { Server, type Socket } from 'node:net';
import { isNativeError, loadNative, type VsockAddress } from '../native.ts';
import { adoptFd, handleFd, listenOnHandle, socketFromHandle } from './node-internals.ts';
import { CID_ANY, type ListenOptions, type Transport } from './types.ts';

/** VMADDR_PORT_ANY: let the kernel pick a free port. */
export const VSOCK_PORT_ANY = 0xffffffff;
export const DEFAULT_VSOCK_CONNECT_TIMEOUT_MS = 10_000;
const DEFAULT_BACKLOG = 511;

/**
 * Adopts a listening stream-socket fd (vsock, but any stream socket works) as a net.Server, which then
 * owns it. If the fd cannot be adopted this throws synchronously and the caller still owns the fd.
 */
export function serverFromListeningFd(
  fd: number,
  opts: { allowHalfOpen?: boolean; backlog?: number } & ListenOptions = {},
): Promise<Server> {
  const handle = adoptFd(fd, 'SERVER', 'adopting the listening socket');
  const server = new Server({
    allowHalfOpen: opts.allowHalfOpen ?? true,
    pauseOnConnect: opts.pauseOnConnect ?? false,
  });
  return new Promise((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    server.once('listening', () => {
      server.off('error', onError);
      resolve(server);
    });
    listenOnHandle(server, handle, opts.backlog ?? DEFAULT_BACKLOG);
  });
}

/**
 * Wraps a connected stream-socket fd as a net.Socket (half-open allowed, like the emulated transport),
 * which then owns it. On failure it throws and the caller still owns the fd.
 */
export function socketFromConnectedFd(fd: number): Socket {
  const handle = adoptFd(fd, 'SOCKET', 'adopting the connected socket');
  return socketFromHandle(handle, { readable: true, writable: true, allowHalfOpen: true });
}

/** The peer's (cid, port) of a vsock connection, or undefined if it is not (or no longer) a vsock socket. */
export function vsockRemoteAddress(sock: Socket): VsockAddress | undefined {
  const fd = handleFd(sock);
  if (fd === undefined) return undefined;
  try {
    return loadNative().vsockRemoteAddress(fd);
  } catch {
    return undefined;
  }
}

/** The (cid, port) a vsock server is bound to (port is useful after listening on VSOCK_PORT_ANY). */
export function vsockLocalAddress(obj: Server | Socket): VsockAddress | undefined {
  const fd = handleFd(obj);
  if (fd === undefined) return undefined;
  try {
    return loadNative().vsockLocalAddress(fd);
  } catch {
    return undefined;
  }
}

export interface VsockTransportOptions {
  /** CID to bind listeners to; default VMADDR_CID_ANY. */
  listenCid?: number;
  connectTimeoutMs?: number;
  backlog?: number;
}

export class VsockTransport implements Transport {
  readonly kind = 'vsock' as const;
  private readonly listenCid: number;
  private readonly connectTimeoutMs: number;
  private readonly backlog: number;

  constructor(opts: VsockTransportOptions = {}) {
    this.listenCid = opts.listenCid ?? CID_ANY;
    this.connectTimeoutMs = opts.connectTimeoutMs ?? DEFAULT_VSOCK_CONNECT_TIMEOUT_MS;
    this.backlog = opts.backlog ?? DEFAULT_BACKLOG;
  }

  async listen(port: number, opts: ListenOptions = {}): Promise<Server> {
    const native = loadNative();
    const fd = native.vsockSocket();
    try {
      native.vsockBind(fd, this.listenCid, port);
      native.vsockListen(fd, this.backlog);
    } catch (err) {
      native.closeFd(fd);
      throw withAddress(err, 'listen on', this.listenCid, port);
    }
    let server: Promise<Server>;
    try {
      server = serverFromListeningFd(fd, { ...opts, allowHalfOpen: true, backlog: this.backlog });
    } catch (err) {
      native.closeFd(fd);
      throw err;
    }
    // From here the Pipe handle owns the fd (closing the server closes it).
    return server;
  }

  async connectFd(cid: number, port: number, timeoutMs: number): Promise<number> {
    try {
      return await loadNative().vsockConnect(cid, port, timeoutMs);
    } catch (err) {
      throw withAddress(err, 'connect to', cid, port);
    }
  }

  async connect(cid: number, port: number): Promise<Socket> {
    let fd: number;
    try {
      fd = await loadNative().vsockConnect(cid, port, this.connectTimeoutMs);
    } catch (err) {
      throw withAddress(err, 'connect to', cid, port);
    }
    try {
      return socketFromConnectedFd(fd);
    } catch (err) {
      loadNative().closeFd(fd);
      throw err;
    }
  }
}

function withAddress(err: unknown, what: string, cid: number, port: number): unknown {
  if (isNativeError(err)) err.message = `vsock ${what} ${cid}:${port}: ${err.message}`;
  return err;
}
