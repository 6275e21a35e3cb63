// Host-side egress relay on vsock 17002: reads one connect request per stream (protocol.ts), resolves
// and dials on the host, answers "Ok" or {"Err":...}, then joins the streams. Event-driven: one
// socket pair per tunnel, no worker pool, no thread per connection.
//
//   enclave proxy --vsock 17002--> [relay: frame -> policy -> DNS -> deny_ips -> connect] --TCP--> upstream
//
// The host is untrusted from the enclave's point of view: everything this side enforces (its own
// policy, the enclave's deny_ips after DNS) is defence in depth, never the enclave's protection.
import { lookup as dnsLookup, resolve4 } from 'node:dns/promises';
import { connect as netConnect, type Server, type Socket } from 'node:net';
import { ConnectionSet, closeServer, trackConnections } from '../connections.ts';
import { onceWithin, withDeadline } from '../deadline.ts';
import { RelayError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { NativeAddon } from '../native.ts';
import {
  formatIp,
  formatRange,
  type IpAddr,
  type IpRange,
  inRange,
  parseIp,
  parseRange,
} from '../policy/address.ts';
import { compilePolicy, normalizeHost, type Policy } from '../policy/policy.ts';
import { keepServing } from '../server-errors.ts';
import { type Service, serviceLifetime } from '../service.ts';
import { FastConnection, fastPathAddon, takeConnections } from '../transport/fast.ts';
import { socketFromHandle } from '../transport/node-internals.ts';
import { joinSockets } from '../transport/tunnel.ts';
import { EGRESS_VSOCK_PORT, type Transport } from '../transport/types.ts';
import { boundedMemo } from './memo.ts';
import {
  type ConnectRequest,
  encodeResolveResponse,
  encodeResponse,
  FrameError,
  MAX_RESOLVED,
  parseRelayRequest,
  readFrame,
  readFrameFd,
  toWireError,
} from './protocol.ts';

export interface LookupResult {
  address: string;
  family: number;
}

/** The relay's settings (cloister.yaml egress.* on the host side, or a test's). */
export interface RelaySlice {
  /** Optional host-side policy rules (the enclave's policy is the one that counts). */
  allow?: string[];
  deny?: string[];
  /** Budget for DNS plus trying every address (default 10 s). */
  connectTimeoutMs?: number;
  /** How long a new stream may take to send its request frame (default 10 s). */
  requestTimeoutMs?: number;
  /** Close a tunnel after this long without traffic (default 0 = never; the enclave side has its own). */
  idleTimeoutMs?: number;
  /** vsock port to listen on (default 17002). */
  port?: number;
}

export interface RelayDeps {
  transport: Transport;
  logger: Logger;
  /** Resolver (default: the system's, every A and AAAA record). Tests inject one to avoid real DNS. */
  lookup?: (host: string) => Promise<LookupResult[]>;
  /**
   * Answers the enclave's DNS stub (transparent egress, resolver: relay): IPv4 addresses with their TTL.
   * Default: the system's DNS servers (c-ares, A records). Tests inject one to avoid real DNS.
   */
  resolve?: (name: string) => Promise<{ address: string; ttl: number }[]>;
}

/** close() cuts tunnels off at once: a tunnel has no end the relay could wait for. */
export type Relay = Service;

const EACCES = 13;
/** Distinct target hosts kept normalised. */
const TARGET_MEMO_MAX = 1024;
/** Distinct deny lists kept parsed (one enclave sends one or two). */
const DENY_LIST_MEMO_MAX = 64;
const EINVAL = 22;
/** The reply that opens a tunnel. */
const RELAY_OK = encodeResponse({ ok: true });

const systemLookup = (host: string) => dnsLookup(host, { all: true, verbatim: true });
const systemResolve = (name: string) => resolve4(name, { ttl: true });
/** What a resolve reply says when DNS has no answer (RFC 2308: negative answers are cached this long). */
const NEGATIVE_TTL_S = 30;

async function connectOnce(addr: string, family: number, port: number, timeoutMs: number): Promise<Socket> {
  const s = netConnect({ host: addr, port, family, allowHalfOpen: true });
  try {
    await onceWithin(s, 'connect', timeoutMs, () =>
      Object.assign(new Error(`connect to ${addr} timed out`), { code: 'ETIMEDOUT' }),
    );
    return s;
  } catch (e) {
    s.destroy();
    throw e;
  }
}

export async function startEgressRelay(opts: RelaySlice, deps: RelayDeps): Promise<Relay> {
  const log = deps.logger.child({ component: 'egress-relay' });
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const requestTimeoutMs = opts.requestTimeoutMs ?? 10_000;
  const lookup = deps.lookup ?? systemLookup;
  const resolveName = deps.resolve ?? systemResolve;
  // Host-side policy: allow defaults to everything (names, IPs, the host itself) when only deny is given.
  const hostPolicy: Policy | null =
    opts.allow || opts.deny
      ? compilePolicy(
          opts.allow ?? [
            '**',
            '0.0.0.0/0',
            '::/0',
            'host',
            'localhost',
            '127.0.0.0/8',
            '0.0.0.0/8',
            '::1',
            '::',
          ],
          opts.deny ?? [],
        )
      : null;
  const open = new ConnectionSet();
  // Host names normalised once each (IDN to ASCII, IP literals parsed): ~20 µs a tunnel otherwise.
  const normalizeTarget = boundedMemo(TARGET_MEMO_MAX, normalizeHost);
  // An enclave sends the same deny list with every request: parsed once per list (memo.ts), keyed by its
  // JSON text (exact, whatever the entries hold). A list with a bad entry throws and is not kept.
  const parseDenyList = boundedMemo(DENY_LIST_MEMO_MAX, (json: string): IpRange[] =>
    (JSON.parse(json) as string[]).map((text) => {
      const r = parseRange(text);
      if (r === null || typeof r === 'string')
        throw new RelayError(EINVAL, `deny_ips entry '${text}' is not a CIDR`);
      return r;
    }),
  );

  /** Resolves and dials req's target (each allowed address in turn) with `connect`: a Socket or a raw fd. */
  async function dial<S>(
    req: ConnectRequest,
    connect: (addr: string, family: number, port: number, timeoutMs: number) => Promise<S>,
  ): Promise<{ upstream: S; address: string }> {
    const rawHost = req.host.startsWith('[') && req.host.endsWith(']') ? req.host.slice(1, -1) : req.host;
    if (req.port === 0) throw new RelayError(EINVAL, 'port 0 is not a destination');
    // `host` is Enclaver's name for the parent instance: its loopback.
    const isHostAlias = rawHost.toLowerCase() === 'host';
    const target = normalizeTarget(isHostAlias ? '127.0.0.1' : rawHost);
    if ('error' in target) throw new RelayError(EINVAL, `invalid host '${rawHost}': ${target.error}`);
    if (hostPolicy) {
      const d = hostPolicy.check(isHostAlias ? 'host' : rawHost, req.port);
      if (!d.allowed) throw new RelayError(EACCES, `denied by the host's egress policy: ${d.reason}`);
    }
    const denyRanges = parseDenyList(JSON.stringify(req.deny_ips ?? []));
    const deadline = Date.now() + connectTimeoutMs;
    // Each address as judged (an IPv6 form embedding IPv4 folded into it, address.ts) and as dialled: a
    // DNS answer is dialled as given, so a NAT64 answer on an IPv6-only parent still reaches its gateway.
    let addrs: { addr: IpAddr; dial: string; family: number }[];
    if (target.kind === 'ip')
      addrs = [{ addr: target.addr, dial: formatIp(target.addr), family: target.addr.family }];
    else {
      // The timer is cleared once the lookup answers (it used to stay pending for connectTimeoutMs).
      const found = await withDeadline(lookup(target.name), connectTimeoutMs, () =>
        Object.assign(new Error('DNS lookup timed out'), { code: 'ETIMEDOUT' }),
      );
      addrs = found.flatMap((f) => {
        const addr = parseIp(f.address);
        return addr ? [{ addr, dial: f.address, family: f.address.includes(':') ? 6 : 4 }] : [];
      });
      if (addrs.length === 0) throw Object.assign(new Error('no addresses'), { code: 'ENOTFOUND' });
    }
    // Refuse addresses the enclave (deny_ips) or this host's policy denies: P4, names resolving to denied IPs.
    const refused: string[] = [];
    const allowed = addrs.filter(({ addr: a }) => {
      const text = formatIp(a);
      const range = denyRanges.find((r) => inRange(a, r));
      if (range) {
        refused.push(`${text} (in ${formatRange(range)}, denied by the enclave's policy)`);
        return false;
      }
      if (hostPolicy && target.kind === 'name') {
        const d = hostPolicy.check(text, req.port);
        if (d.list === 'deny') {
          refused.push(`${text} (host deny rule '${d.rule}')`);
          return false;
        }
      }
      return true;
    });
    if (allowed.length === 0)
      throw new RelayError(EACCES, `${rawHost} resolves only to denied addresses: ${refused.join(', ')}`);
    let lastErr: NodeJS.ErrnoException = new Error('no address tried');
    for (const a of allowed) {
      const left = deadline - Date.now();
      if (left <= 0) {
        lastErr = Object.assign(new Error('connect timed out'), { code: 'ETIMEDOUT' });
        break;
      }
      const address = a.dial;
      try {
        return { upstream: await connect(address, a.family, req.port, left), address };
      } catch (e) {
        lastErr = e as NodeJS.ErrnoException;
      }
    }
    throw lastErr;
  }

  /** The {os_code, message} a failed request is answered with, logged once. */
  function refusal(e: unknown, req: ConnectRequest | undefined): { os_code: number; message: string } {
    const wire =
      e instanceof RelayError
        ? { os_code: e.osCode, message: e.message }
        : e instanceof FrameError
          ? { os_code: EINVAL, message: `bad request: ${e.message}` }
          : toWireError(e as NodeJS.ErrnoException, req ? `${req.host}:${req.port}` : '');
    log.info(
      { host: req?.host, port: req?.port, os_code: wire.os_code, err: wire.message },
      'egress relay refused',
    );
    return wire;
  }

  /** Answers a refused request with its Err frame and closes the stream. */
  function refuse(sock: Socket, e: unknown, req: ConnectRequest | undefined): void {
    const wire = refusal(e, req);
    if (!sock.destroyed && sock.writable) sock.end(encodeResponse({ ok: false, ...wire }));
    // Any bytes the enclave sent ahead are dropped with the stream.
    sock.resume();
  }

  async function serve(sock: Socket): Promise<void> {
    sock.on('error', () => sock.destroy());
    let req: ConnectRequest | undefined;
    try {
      const request = parseRelayRequest(await readFrame(sock, requestTimeoutMs));
      if ('resolve' in request) return void (await answerResolve(sock, request.resolve));
      req = request;
      const { upstream, address } = await dial(req, connectOnce);
      if (sock.destroyed) {
        upstream.destroy();
        return;
      }
      open.add(upstream);
      sock.write(RELAY_OK);
      log.debug({ host: req.host, port: req.port, address }, 'egress relay connected');
      joinSockets(sock, upstream, { idleTimeoutMs: opts.idleTimeoutMs });
    } catch (e) {
      refuse(sock, e, req);
    }
  }

  /**
   * The fast path (transport/fast.ts): the request frame read exactly by the addon, the target dialled as
   * a raw fd, the two joined by the pump with "Ok" as its greeting; no net.Socket unless it is refused.
   */
  async function serveFast(native: NativeAddon, conn: FastConnection): Promise<void> {
    const h = conn.handle;
    let req: ConnectRequest | undefined;
    let sock: Socket | undefined;
    try {
      const request = parseRelayRequest(await readFrameFd(native, h.fd, requestTimeoutMs));
      // A resolve request (the DNS stub's) is rare and short: answered on the Node path.
      if ('resolve' in request) {
        sock = nodeSocket(conn);
        return void (await answerResolve(sock, request.resolve));
      }
      req = request;
      const dialled = await dial(req, (addr, _family, port, ms) => native.tcpConnect(addr, port, ms));
      // join() takes the upstream fd over whatever happens; false: the relay closed meanwhile.
      if (conn.join(dialled.upstream, { idleTimeoutMs: opts.idleTimeoutMs, greetA: RELAY_OK }))
        log.debug({ host: req.host, port: req.port, address: dialled.address }, 'egress relay connected');
    } catch (e) {
      if (sock) return refuse(sock, e, req);
      if (conn.destroyed) return conn.drop();
      refuse(nodeSocket(conn), e, req);
    }
  }

  /** Hands a fast-path connection over to Node (a refusal or a resolve answer is written through it). */
  function nodeSocket(conn: FastConnection): Socket {
    const sock = socketFromHandle(conn.handle, { readable: true, writable: true, allowHalfOpen: true });
    sock.on('error', () => sock.destroy());
    open.add(sock);
    conn.finish();
    return sock;
  }

  /** One resolve request (the enclave's DNS stub): IPv4 addresses and the smallest TTL, then close. */
  async function answerResolve(sock: Socket, rawName: string): Promise<void> {
    const target = normalizeTarget(rawName);
    if ('error' in target || target.kind !== 'name')
      throw new RelayError(EINVAL, `cannot resolve '${rawName}': not a host name`);
    let reply: Parameters<typeof encodeResolveResponse>[0];
    try {
      const found = await withDeadline(resolveName(target.name), connectTimeoutMs, () =>
        Object.assign(new Error('DNS lookup timed out'), { code: 'ETIMEDOUT' }),
      );
      const addresses = [...new Set(found.map((f) => f.address))].slice(0, MAX_RESOLVED);
      const ttl = found.length === 0 ? NEGATIVE_TTL_S : Math.min(...found.map((f) => f.ttl));
      reply = { ok: true, addresses, ttl };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      // No such name, or no A record: an answer, not a failure (the stub says NXDOMAIN / no data).
      if (code === 'ENOTFOUND' || code === 'ENODATA')
        reply = { ok: true, addresses: [], ttl: NEGATIVE_TTL_S, nxdomain: code === 'ENOTFOUND' };
      else throw e;
    }
    log.debug({ resolve: target.name, addresses: reply.addresses.length }, 'egress relay resolved');
    if (!sock.destroyed && sock.writable) sock.end(encodeResolveResponse(reply));
  }

  const server: Server = await deps.transport.listen(opts.port ?? EGRESS_VSOCK_PORT);
  const lifetime = serviceLifetime({
    stopAccepting: () => closeServer(server),
    connections: open,
    graceMs: 0,
  });
  trackConnections(server, open);
  keepServing(server, log, 'egress relay', { port: opts.port ?? EGRESS_VSOCK_PORT });
  const native = fastPathAddon();
  if (native)
    takeConnections(server, (h) => {
      const conn = new FastConnection(native, h);
      open.add(conn);
      serveFast(native, conn).catch((e) => {
        log.error({ err: e }, 'egress relay stream failed');
        h.close();
        conn.finish();
      });
      return true;
    });
  server.on('connection', (s: Socket) => {
    serve(s).catch((e) => {
      log.error({ err: e }, 'egress relay stream failed');
      s.destroy();
    });
  });
  log.info(
    { port: opts.port ?? EGRESS_VSOCK_PORT, hostPolicy: hostPolicy !== null },
    'egress relay listening',
  );
  return { close: lifetime.close, destroy: lifetime.destroy };
}
