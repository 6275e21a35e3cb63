// Host side of ingress (odyn's HostProxy, keeping its listener alive through accept errors):
//
//   client -> TCP <address>:<host port> -> [this] -> transport (enclave CID, enclave port) -> enclave side
//
// The host port defaults to the enclave port (Enclaver's behaviour) and can differ. With proxyProtocol on,
// a PROXY v2 header carrying the client's address goes first; the enclave side must be configured to read
// it (settings.ingress.proxy_protocol on both sides) and passes it on to the app.
// The parent instance is untrusted: it only ever moves bytes, ciphertext when the port terminates TLS inside.
import { createServer, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.ts';
import { keepServing } from '../server-errors.ts';
import type { Transport } from '../transport/types.ts';
import { encodeProxyV2 } from './proxy-protocol.ts';
import { ConnectionSet, splice } from './splice.ts';

export interface HostPortMapping {
  /** Port inside the enclave (the vsock port and the app's 127.0.0.1 port). */
  enclavePort: number;
  /** TCP port on the host; 0 picks a free one (see addresses()). Defaults to enclavePort. */
  hostPort?: number;
}

export interface HostIngressOptions {
  transport: Transport;
  enclaveCid: number;
  logger: Logger;
  ports: HostPortMapping[];
  /** Address the TCP listeners bind; Enclaver binds 0.0.0.0. */
  listenAddress?: string;
  proxyProtocol?: boolean;
  /** How long to keep retrying the enclave while it boots before dropping a client. */
  connectRetryMs?: number;
  closeGraceMs?: number;
}

export interface HostIngress {
  /** Host port actually bound, per enclave port. */
  addresses(): Map<number, { address: string; port: number }>;
  close(): Promise<void>;
}

async function connectEnclave(
  transport: Transport,
  cid: number,
  port: number,
  deadline: number,
  gone: () => boolean,
): Promise<Socket> {
  let delay = 25;
  for (;;) {
    try {
      return await transport.connect(cid, port);
    } catch (err) {
      if (Date.now() + delay > deadline || gone()) throw err;
      await sleep(delay);
      delay = Math.min(delay * 2, 500);
    }
  }
}

export async function startHostIngress(opts: HostIngressOptions): Promise<HostIngress> {
  const log = opts.logger.child({ component: 'ingress-host' });
  const conns = new ConnectionSet();
  const servers = new Map<number, Server>();
  const retryMs = opts.connectRetryMs ?? 10_000;

  const handle = async (enclavePort: number, client: Socket) => {
    conns.add(client);
    client.on('error', () => {});
    client.pause();
    client.setNoDelay(true);
    let upstream: Socket;
    try {
      upstream = await connectEnclave(
        opts.transport,
        opts.enclaveCid,
        enclavePort,
        Date.now() + retryMs,
        () => client.destroyed,
      );
    } catch (err) {
      log.warn({ port: enclavePort, err }, 'cannot reach the enclave; client dropped');
      client.destroy();
      return;
    }
    conns.add(upstream);
    if (opts.proxyProtocol) {
      upstream.write(
        encodeProxyV2(
          { address: client.remoteAddress ?? '', port: client.remotePort ?? 0 },
          { address: client.localAddress ?? '', port: client.localPort ?? 0 },
        ),
      );
    }
    await splice(client, upstream);
  };

  try {
    for (const m of opts.ports) {
      const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (sock) => {
        void handle(m.enclavePort, sock);
      });
      await new Promise<void>((res, rej) => {
        server.once('error', rej);
        server.listen({ port: m.hostPort ?? m.enclavePort, host: opts.listenAddress ?? '0.0.0.0' }, () => {
          server.off('error', rej);
          res();
        });
      });
      // Unlike enclaver-run, an accept error (EMFILE...) is logged and the listener keeps going.
      keepServing(server, log, 'ingress listener', { port: m.enclavePort });
      servers.set(m.enclavePort, server);
      const a = server.address();
      log.info(
        { enclavePort: m.enclavePort, hostPort: typeof a === 'object' && a ? a.port : undefined },
        'ingress forwarding',
      );
    }
  } catch (err) {
    for (const s of servers.values()) s.close();
    throw new Error(`ingress: cannot listen: ${(err as Error).message}`);
  }

  let closing: Promise<void> | null = null;
  return {
    addresses() {
      const out = new Map<number, { address: string; port: number }>();
      for (const [p, s] of servers) {
        const a = s.address();
        if (a && typeof a === 'object') out.set(p, { address: a.address, port: a.port });
      }
      return out;
    },
    close() {
      closing ??= (async () => {
        // Stop accepting now; server.close()'s callback would wait for every open connection.
        for (const s of [...servers.values()]) s.close();
        await conns.drain(opts.closeGraceMs ?? 5000);
      })();
      return closing;
    },
  };
}
