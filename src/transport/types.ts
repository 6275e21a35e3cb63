// One transport interface for both sides of the enclave boundary. Streams are real net.Socket
// objects either way, so backpressure, half-close and destroy behave exactly as Node's own.
import type { Server, Socket } from 'node:net';

// The CIDs and ports themselves are in src/constants.ts.
export {
  APP_LOG_PORT,
  CID_ANY,
  CID_HOST,
  DEV_ENCLAVE_CID,
  EGRESS_VSOCK_PORT,
  STATUS_PORT,
} from '../constants.ts';

/** Options of a transport listener (net.createServer's own, which every transport passes on). */
export interface ListenOptions {
  /** Accepted sockets start paused: Node reads nothing until the socket is resumed (or spliced). */
  pauseOnConnect?: boolean;
}

export interface Transport {
  readonly kind: 'vsock' | 'emulated' | 'hybrid';
  /** Listen on `port` of this side's own CID. The server emits 'connection' with net.Socket. */
  listen(port: number, opts?: ListenOptions): Promise<Server>;
  /** Connect to (cid, port). Rejects with an Error carrying `code` (ECONNREFUSED, ENOENT...). */
  connect(cid: number, port: number): Promise<Socket>;
  /**
   * The same connection as a raw non-blocking fd, made by the addon without a net.Socket (the
   * per-connection fast path, src/transport/fast.ts); the caller owns the fd. Absent where the
   * transport needs Node to connect (the hybrid transport's handshake).
   */
  connectFd?(cid: number, port: number, timeoutMs: number): Promise<number>;
}
