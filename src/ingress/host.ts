// Host side of ingress (odyn's HostProxy, keeping its listener alive through accept errors):
//
//   client -> TCP <address>:<host port> -> [this] -> transport (enclave CID, enclave port) -> enclave side
//
// The host port defaults to the enclave port (Enclaver's behaviour) and can differ. With proxyProtocol on,
// a PROXY v2 header carrying the client's address goes first; the enclave side must be configured to read
// it (settings.ingress.proxy_protocol on both sides) and passes it on to the app.
// The parent instance is untrusted: it only ever moves bytes, ciphertext when the port terminates TLS inside.
import { createServer, type Server, type Socket } from 'node:net';
import { ConnectionSet, closeServer } from '../connections.ts';
import type { Logger } from '../log/logger.ts';
import { keepServing } from '../server-errors.ts';
import { type Service, serviceLifetime } from '../service.ts';
import { connectWithRetry } from '../transport/connect-retry.ts';
import { FastConnection, fastPathAddon, takeConnections } from '../transport/fast.ts';
import type { Transport } from '../transport/types.ts';
import { encodeProxyV2 } from './proxy-protocol.ts';
import { splice } from './splice.ts';

export interface HostPortMapping {
  /** Port inside the enclave (the vsock port and the app's 127.0.0.1 port). */
  enclavePort: number;
  /** TCP port on the host; 0 picks a free one (see addresses()). Defaults to enclavePort. */
  hostPort?: number;
}

/** What to forward and how (from the command line and cloister.yaml). */
export interface HostIngressSlice {
  ports: HostPortMapping[];
  /** Address the TCP listeners bind; Enclaver binds 0.0.0.0. */
  listenAddress?: string;
  proxyProtocol?: boolean;
  /** How long to keep retrying the enclave while it boots before dropping a client. */
  connectRetryMs?: number;
  /** How long close() lets connections in flight finish (default 5 s). */
  closeGraceMs?: number;
}

export interface HostIngressDeps {
  transport: Transport;
  /** The enclave whose ports are forwarded. */
  enclaveCid: number;
  logger: Logger;
}

export interface HostIngress extends Service {
  /** Host port actually bound, per enclave port. */
  addresses(): Map<number, { address: string; port: number }>;
}

export async function startHostIngress(opts: HostIngressSlice, deps: HostIngressDeps): Promise<HostIngress> {
  const log = deps.logger.child({ component: 'ingress-host' });
  const conns = new ConnectionSet();
  const servers = new Map<number, Server>();
  const retryMs = opts.connectRetryMs ?? 10_000;
  const lifetime = serviceLifetime({
    // Stop accepting now; each server's close callback comes once its connections are gone.
    stopAccepting: () => Promise.all([...servers.values()].map(closeServer)),
    connections: conns,
    graceMs: opts.closeGraceMs ?? 5000,
  });

  const handle = async (enclavePort: number, client: Socket) => {
    conns.add(client);
    client.on('error', () => {});
    client.pause();
    client.setNoDelay(true);
    let upstream: Socket;
    try {
      upstream = await connectWithRetry(() => deps.transport.connect(deps.enclaveCid, enclavePort), {
        deadline: Date.now() + retryMs,
        gone: () => client.destroyed,
        maxDelayMs: 500,
      });
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

  // The fast path (transport/fast.ts): host TCP accept -> enclave connect -> splice pump, no net.Socket.
  // A PROXY header needs the client's addresses from a Socket, so those listeners keep the Node path.
  const native = opts.proxyProtocol ? null : fastPathAddon();
  const connectFd = deps.transport.connectFd?.bind(deps.transport);
  const forwardFast = async (enclavePort: number, conn: FastConnection) => {
    conn.handle.setNoDelay?.(true);
    let upstream: number;
    try {
      upstream = await connectWithRetry(
        () => connectFd!(deps.enclaveCid, enclavePort, Math.max(1, retryMs)),
        { deadline: Date.now() + retryMs, gone: () => conn.destroyed, maxDelayMs: 500 },
      );
    } catch (err) {
      log.warn({ port: enclavePort, err }, 'cannot reach the enclave; client dropped');
      return conn.drop();
    }
    try {
      conn.join(upstream);
    } catch (err) {
      log.warn({ port: enclavePort, err }, 'cannot start the tunnel; client dropped');
      conn.drop();
    }
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
      if (native && connectFd)
        takeConnections(server, (h) => {
          const conn = new FastConnection(native, h);
          conns.add(conn);
          void forwardFast(m.enclavePort, conn);
          return true;
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
    await lifetime.destroy();
    throw new Error(`ingress: cannot listen: ${(err as Error).message}`);
  }

  return {
    addresses() {
      const out = new Map<number, { address: string; port: number }>();
      for (const [p, s] of servers) {
        const a = s.address();
        if (a && typeof a === 'object') out.set(p, { address: a.address, port: a.port });
      }
      return out;
    },
    close: lifetime.close,
    destroy: lifetime.destroy,
  };
}
