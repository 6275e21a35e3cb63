// "Hybrid vsock": the host end of a VM's virtio-vsock device as a Unix socket, as Firecracker, Cloud
// Hypervisor and rust-vmm's vhost-device-vsock expose it (Firecracker's docs/vsock.md, "host-initiated
// connections"). Only the host side uses it; the guest speaks plain AF_VSOCK.
//
//   host -> guest:  connect to <uds>, send "CONNECT <port>\n", read "OK <assigned>\n", then raw bytes
//   guest -> host:  the guest dials CID 2 port P; the VMM connects to <uds>_<P>, where we listen
//
// The socket belongs to one VM, so connect() ignores the CID it is given (the caller's --attach-cid).
import { connect as netConnect, type Server, type Socket } from 'node:net';
import { listenUnix } from './emulated.ts';
import type { ListenOptions, Transport } from './types.ts';

/** The longest acknowledgement line we accept ("OK " + a u32 + "\n" is 14 bytes). */
const MAX_ACK = 64;

export class HybridTransport implements Transport {
  readonly kind = 'hybrid' as const;
  readonly udsPath: string;
  constructor(udsPath: string) {
    this.udsPath = udsPath;
  }

  async listen(port: number, opts: ListenOptions = {}): Promise<Server> {
    return listenUnix(`${this.udsPath}_${port}`, opts);
  }

  connect(_cid: number, port: number): Promise<Socket> {
    return new Promise((resolve, reject) => {
      const sock = netConnect({ path: this.udsPath, allowHalfOpen: true });
      let ack = Buffer.alloc(0);
      let settled = false;
      const fail = (err: Error & { code?: string }) => {
        if (settled) return;
        settled = true;
        sock.destroy();
        reject(err);
      };
      // The acknowledgement is read in paused mode ('readable' + read()), never with a 'data' listener: a
      // stream paused after flowing stays paused for the caller's own 'data' listener, and one left flowing
      // drops what arrives before the caller listens. Removing the 'readable' listener hands the stream
      // over untouched.
      const onReadable = () => {
        for (let chunk = sock.read() as Buffer | null; chunk !== null; chunk = sock.read() as Buffer | null) {
          ack = Buffer.concat([ack, chunk]);
          const nl = ack.indexOf(0x0a);
          if (nl < 0) {
            if (ack.length > MAX_ACK) fail(new Error('hybrid vsock: no acknowledgement line from the VMM'));
            continue;
          }
          sock.off('readable', onReadable);
          sock.off('end', onEnd);
          const line = ack.subarray(0, nl).toString('latin1');
          if (!/^OK \d{1,10}$/.test(line)) {
            return fail(
              Object.assign(
                new Error(`hybrid vsock: CONNECT ${port} refused by the VMM (${JSON.stringify(line)})`),
                {
                  code: 'ECONNREFUSED',
                },
              ),
            );
          }
          // Anything after the line is the guest's first bytes: give them back to the stream.
          if (ack.length > nl + 1) sock.unshift(ack.subarray(nl + 1));
          settled = true;
          sock.off('error', fail);
          resolve(sock);
          return;
        }
      };
      // The VMM closes the connection when nothing listens on that guest port.
      const onEnd = () =>
        fail(
          Object.assign(new Error(`hybrid vsock: CONNECT ${port}: connection refused`), {
            code: 'ECONNREFUSED',
          }),
        );
      sock.once('error', fail);
      sock.on('readable', onReadable);
      sock.once('end', onEnd);
      sock.once('connect', () => sock.write(`CONNECT ${port}\n`));
    });
  }
}
