// AF_VSOCK through the native addon. (Filled in by the native/transport work.)
import type { Server, Socket } from 'node:net';
import type { Transport } from './types.ts';

export class VsockTransport implements Transport {
  readonly kind = 'vsock' as const;
  listen(_port: number): Promise<Server> {
    return Promise.reject(new Error('vsock transport not implemented yet'));
  }
  connect(_cid: number, _port: number): Promise<Socket> {
    return Promise.reject(new Error('vsock transport not implemented yet'));
  }
}
