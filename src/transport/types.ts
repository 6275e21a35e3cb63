// One transport interface for both sides of the enclave boundary. Streams are real net.Socket
// objects either way, so backpressure, half-close and destroy behave exactly as Node's own.
import type { Server, Socket } from 'node:net';

/** VMADDR_CID_ANY: listen on every CID (what the enclave side does). */
export const CID_ANY = 0xffffffff;
/** VMADDR_CID_HOST: the parent instance as seen from inside the enclave. */
export const CID_HOST = 2;
/** CID used for the enclave in dev mode when none is configured. */
export const DEV_ENCLAVE_CID = 16;

export const STATUS_PORT = 17000;
export const APP_LOG_PORT = 17001;
export const EGRESS_VSOCK_PORT = 17002;

export interface Transport {
  readonly kind: 'vsock' | 'emulated' | 'hybrid';
  /** Listen on `port` of this side's own CID. The server emits 'connection' with net.Socket. */
  listen(port: number): Promise<Server>;
  /** Connect to (cid, port). Rejects with an Error carrying `code` (ECONNREFUSED, ENOENT...). */
  connect(cid: number, port: number): Promise<Socket>;
}
