// `cloister attest proxy`: a local forwarder for clients that cannot check attestation themselves (curl,
// the vault CLI). It listens on a loopback address in plain TCP; for each connection it opens TLS to the
// enclave, verifies the attested certificate, and only then carries bytes, so the client's traffic only
// ever travels inside a TLS session whose other end passed the checks:
//
//   curl http://127.0.0.1:8200  ->  [proxy: TLS client, attestation check]  ->  enclave ingress (attested TLS)
//
// A connection whose enclave fails a check is closed before a byte of it is sent, and the failed check is
// reported; the proxy keeps serving.
import { createServer, type Server } from 'node:net';
import { ConnectionSet, closeServer } from '../connections.ts';
import { toCloisterError } from '../errors.ts';
import { type Service, serviceLifetime } from '../service.ts';
import { type AttestedIdentity, type AttestedTlsPolicy, connectAttested } from './client.ts';

export interface AttestProxyOptions {
  listen: { host: string; port: number };
  to: { host: string; port: number };
  policy: AttestedTlsPolicy;
  /** A fresh document (nonce in SNI) for every connection. */
  fresh?: boolean;
  timeoutMs?: number;
  /** Each connection's outcome: the identity it was forwarded to, or the error that refused it. */
  onConnection?: (outcome: { identity: AttestedIdentity } | { error: Error }) => void;
}

/** close() cuts connections off at once (a forwarded connection has no end the proxy could wait for). */
export interface AttestProxy extends Service {
  address: { host: string; port: number };
}

export async function startAttestProxy(o: AttestProxyOptions): Promise<AttestProxy> {
  const open = new ConnectionSet();
  const server: Server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    open.add(client);
    client.on('error', () => {});
    connectAttested({
      ...o.policy,
      host: o.to.host,
      port: o.to.port,
      fresh: o.fresh,
      timeoutMs: o.timeoutMs,
    }).then(
      ({ socket, identity }) => {
        o.onConnection?.({ identity });
        if (client.destroyed) {
          socket.destroy();
          return;
        }
        open.add(socket);
        socket.on('error', () => client.destroy());
        client.on('error', () => socket.destroy());
        client.on('close', () => socket.destroy());
        socket.on('close', () => client.destroy());
        client.pipe(socket);
        socket.pipe(client);
        client.resume();
      },
      (err: unknown) => {
        o.onConnection?.({ error: toCloisterError(err) });
        client.destroy();
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as { address: string; port: number };
  const lifetime = serviceLifetime({
    stopAccepting: () => closeServer(server),
    connections: open,
    graceMs: 0,
  });
  return {
    address: { host: addr.address, port: addr.port },
    close: lifetime.close,
    destroy: lifetime.destroy,
  };
}
