// Enclave side of ingress (odyn's EnclaveProxy, without its serialized TLS handshakes):
//
//   host TCP :P -> vsock (enclave CID, P) -> [this] -> [optional TLS termination] -> TCP 127.0.0.1:P (the app)
//
// One transport listener per manifest `ingress[].listen_port`. Each connection is spliced to the app with
// backpressure and half-close. While the app is still starting (connection refused), the upstream connect
// is retried with backoff for settings.ingress.upstream_retry_ms, then the client is dropped.
// With `tls`, the TLS session ends here, so the parent instance only ever relays ciphertext.
import { connect as netConnect, type Server, type Socket } from 'node:net';
import { Duplex } from 'node:stream';
import { type SecureContext, TLSSocket } from 'node:tls';
import { ConnectionSet, closeServer } from '../connections.ts';
import { onceWithin } from '../deadline.ts';
import { ProxyHeaderError, TlsHandshakeError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { ingressConnections } from '../metrics.ts';
import type { NativeAddon } from '../native.ts';
import type { IngressPlan, PortPlan } from '../plan/ingress.ts';
import { keepServing } from '../server-errors.ts';
import { type Service, serviceLifetime } from '../service.ts';
import { connectWithRetry } from '../transport/connect-retry.ts';
import { FastConnection, fastPathAddon, takeConnections } from '../transport/fast.ts';
import type { Transport } from '../transport/types.ts';
import { keepTlvs, readProxyV2 } from './proxy-protocol.ts';
import { splice } from './splice.ts';

export { type PortPlan, planIngress, resolveTlsMaterial, type TlsMaterial } from '../plan/ingress.ts';

/** How long close() waits for in-flight connections when the plan names no grace (closeGraceMs). */
const CLOSE_GRACE_MS = 10_000;
/** One try of the fast path's connect to the app (loopback: refused or accepted at once in practice). */
const FAST_CONNECT_TIMEOUT_MS = 10_000;
/** A client that has not finished its TLS handshake (or PROXY header) by then is dropped. */
const HANDSHAKE_TIMEOUT_MS = 30_000;

/** A plain JS duplex over a socket (reads through its JS buffer, including unshifted bytes). */
function streamOver(sock: Socket): Duplex {
  const d = new Duplex({
    read() {
      sock.resume();
    },
    write(chunk, _enc, cb) {
      sock.write(chunk, cb);
    },
    final(cb) {
      sock.end();
      cb();
    },
    destroy(err, cb) {
      sock.destroy();
      cb(err);
    },
  });
  sock.on('data', (c: Buffer) => {
    if (!d.push(c)) sock.pause();
  });
  sock.once('end', () => d.push(null));
  sock.once('close', () => d.destroy());
  return d;
}

/** The app is still starting: its port refuses (or resets) until it listens. */
const appStarting = (err: NodeJS.ErrnoException) =>
  err.code === 'ECONNREFUSED' || err.code === 'ECONNRESET' || err.code === 'EADDRNOTAVAIL';

/** Connects to 127.0.0.1:port, retrying refused connections with backoff until deadline. */
export function connectUpstream(port: number, deadline: number, gone: () => boolean): Promise<Socket> {
  return connectWithRetry(
    () =>
      new Promise<Socket>((res, rej) => {
        const s = netConnect({ host: '127.0.0.1', port, allowHalfOpen: true });
        s.once('error', rej);
        s.once('connect', () => {
          s.off('error', rej);
          s.setNoDelay(true);
          res(s);
        });
      }),
    { deadline, gone, maxDelayMs: 1000, retriable: appStarting },
  );
}

export interface IngressDeps {
  /** Where the host side's connections arrive (vsock, or its emulation). */
  transport: Transport;
  logger: Logger;
  /** The enclave's attested certificate; required when a port's plan has attestedTls. */
  attestedTls?: AttestedContexts;
}

/**
 * What ingress needs of the enclave's attested TLS certificate (src/attested-tls/issuer.ts), passed in by
 * the supervisor: the current context (renewed while running) and the SNI callback that answers a
 * client's nonce with a certificate made for it.
 */
export interface AttestedContexts {
  current(): { context: SecureContext };
  sniCallback(servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void;
}

/** The TLS options of a port's connections: its fixed context, the attested one, or none (plain). */
function tlsOptionsFor(
  plan: PortPlan,
  deps: IngressDeps,
): (() => { secureContext: SecureContext; SNICallback?: AttestedContexts['sniCallback'] }) | null {
  if (plan.attestedTls) {
    const attested = deps.attestedTls;
    if (!attested) throw new Error(`ingress port ${plan.port} asks for attested TLS, but it is not running`);
    // Read per connection: a renewal replaces the context for the connections after it.
    return () => ({ secureContext: attested.current().context, SNICallback: attested.sniCallback });
  }
  const { secureContext } = plan;
  return secureContext ? () => ({ secureContext }) : null;
}

/** Serves the plan's ingress ports (the manifest's, plus the metrics port when the plan lists it). */
export async function startIngress(opts: IngressPlan, deps: IngressDeps): Promise<Service> {
  const plans: PortPlan[] = opts.ports;
  const log: Logger = deps.logger.child({ component: 'ingress' });
  const conns = new ConnectionSet();
  const tlvTypes = new Set(opts.proxyTlvs ?? []);
  const servers: Server[] = [];
  const lifetime = serviceLifetime({
    // Stop accepting now; each server's close callback comes once its connections are gone.
    stopAccepting: () => Promise.all(servers.map(closeServer)),
    connections: conns,
    graceMs: opts.closeGraceMs ?? CLOSE_GRACE_MS,
  });

  const tlsOptions = new Map(plans.map((p) => [p.port, tlsOptionsFor(p, deps)]));
  const handle = async (plan: PortPlan, raw: Socket) => {
    const { port } = plan;
    const tlsFor = tlsOptions.get(port);
    const label = String(port);
    const arrived = Date.now();
    let inbound: Socket = raw;
    let upstream: Socket | undefined;
    conns.add(raw);
    raw.on('error', () => {}); // reported through the result below; never crash the daemon
    try {
      let header: Buffer | null = null;
      if (plan.proxyProtocol ?? opts.proxyProtocol)
        header = keepTlvs(await readProxyV2(raw, HANDSHAKE_TIMEOUT_MS), tlvTypes);
      if (tlsFor) {
        // TLSSocket reads a net.Socket's handle directly and would miss bytes we pushed back after the
        // PROXY header: give it a JS stream over the socket in that case.
        const carrier = header ? streamOver(raw) : raw;
        const tls = new TLSSocket(carrier as Socket, { isServer: true, ...tlsFor() } as never);
        inbound = tls;
        conns.add(tls);
        tls.on('error', () => {});
        await onceWithin(
          tls,
          'secure',
          HANDSHAKE_TIMEOUT_MS,
          () => new TlsHandshakeError('TLS handshake timed out'),
          {
            endsOn: ['end', 'close'],
            gone: () => new TlsHandshakeError('TLS handshake failed: client went away'),
          },
        ).catch((e: Error) => {
          if (e instanceof TlsHandshakeError) throw e;
          throw new TlsHandshakeError(`TLS handshake failed: ${e.message}`, { cause: e });
        });
      }
      inbound.pause();
      upstream = await connectUpstream(port, arrived + opts.upstreamRetryMs, () => raw.destroyed);
      conns.add(upstream);
      if (header) upstream.write(header);
      ingressConnections.inc({ port: label, result: 'ok' });
      const stats = await splice(inbound, upstream);
      log.debug({ port, in: stats.aToB, out: stats.bToA, engine: stats.engine }, 'ingress connection closed');
    } catch (err) {
      const result =
        err instanceof TlsHandshakeError
          ? 'tls_failed'
          : err instanceof ProxyHeaderError
            ? 'proxy_header_invalid'
            : 'upstream_failed';
      ingressConnections.inc({ port: label, result });
      if (result === 'upstream_failed') {
        log.warn({ port, err }, `Connection to upstream (127.0.0.1:${port}) failed`);
      } else {
        log.info({ port, err }, 'ingress connection dropped');
      }
      inbound.destroy();
      raw.destroy();
      upstream?.destroy();
    }
  };

  // The fast path (transport/fast.ts) for plain ports: vsock accept -> TCP connect to the app -> splice
  // pump, no net.Socket. TLS and PROXY-header ports read through Node and keep the path above.
  const native = fastPathAddon();
  const forwardFast = async (native: NativeAddon, port: number, conn: FastConnection) => {
    const label = String(port);
    let upstream: number;
    try {
      upstream = await connectWithRetry(() => native.tcpConnect('127.0.0.1', port, FAST_CONNECT_TIMEOUT_MS), {
        deadline: Date.now() + opts.upstreamRetryMs,
        gone: () => conn.destroyed,
        maxDelayMs: 1000,
        retriable: appStarting,
      });
    } catch (err) {
      ingressConnections.inc({ port: label, result: 'upstream_failed' });
      log.warn({ port, err }, `Connection to upstream (127.0.0.1:${port}) failed`);
      return conn.drop();
    }
    try {
      const onClose = ({ aToB, bToA }: { aToB: number; bToA: number }) =>
        log.debug({ port, in: aToB, out: bToA, engine: 'splice' }, 'ingress connection closed');
      if (!conn.join(upstream, { onClose })) return;
      ingressConnections.inc({ port: label, result: 'ok' });
    } catch (err) {
      ingressConnections.inc({ port: label, result: 'upstream_failed' });
      log.warn({ port, err }, 'cannot start the tunnel; client dropped');
      conn.drop();
    }
  };

  try {
    for (const plan of plans) {
      // A plain port's bytes stay in the kernel until the splice pump moves them: Node never starts
      // reading (no readStart/readStop per connection, no request read into JS only to be written
      // back at the handover). A PROXY header or a TLS handshake is read through Node, so those ports
      // keep Node's usual flowing sockets.
      const plain = !tlsOptions.get(plan.port) && !(plan.proxyProtocol ?? opts.proxyProtocol);
      const server = await deps.transport.listen(plan.port, { pauseOnConnect: plain });
      servers.push(server);
      if (plain && native)
        takeConnections(server, (h) => {
          const conn = new FastConnection(native, h);
          conns.add(conn);
          void forwardFast(native, plan.port, conn);
          return true;
        });
      server.on('connection', (sock: Socket) => {
        // Each connection runs on its own: a slow TLS handshake or a late app never blocks accept().
        void handle(plan, sock);
      });
      keepServing(server, log, 'ingress listener', { port: plan.port });
      const tls = plan.attestedTls ? 'attested' : plan.secureContext !== null;
      log.info({ port: plan.port, tls }, 'ingress listening');
    }
  } catch (err) {
    await lifetime.destroy();
    throw err;
  }
  return { close: lifetime.close, destroy: lifetime.destroy };
}
