// In-enclave egress proxy on 127.0.0.1:<egress.proxy_port> (default 10000), what the app's
// HTTP(S)_PROXY points at. Every target is judged by the policy after normalisation, and the
// normalised target is what the host relay is asked to dial, so a header or spelling can never make
// the proxy check one host and connect to another.
//
//   app --HTTP CONNECT / absolute-form--> [proxy: parse -> policy -> vsock 2:17002 -> relay frame] --> host relay
//
// Status codes: 200 tunnel up; 400 malformed request or target; 403 not allowed by the policy (odyn
// answered 401 "blocked by egress security policy"; the body keeps that wording and adds why);
// 502 upstream refused / relay unreachable; 503 too many tunnels; 504 timeout.

import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type ServerResponse,
  STATUS_CODES,
} from 'node:http';
import type { Socket } from 'node:net';
import { ConnectionSet, closeServer, trackConnections } from '../connections.ts';
import { withDeadline } from '../deadline.ts';
import {
  BadRequestError,
  type CloisterError,
  EgressBadTargetError,
  EgressDeniedError,
  EgressRefusedError,
  EgressRelayProtocolError,
  EgressRelayUnreachableError,
  EgressTimeoutError,
  EgressTransferCodingError,
  EgressTunnelLimitError,
  EgressUpgradeError,
  EgressUpstreamError,
  FrameError,
  HeadersTooLargeError,
  MalformedHttpError,
  RequestTimeoutError,
  renderText,
  toCloisterError,
} from '../errors.ts';
import { responseStarted } from '../http/refuse.ts';
import { listenOn } from '../http/server.ts';
import type { Logger } from '../log/logger.ts';
import { egressBytes, egressDecisions, egressOpenTunnels } from '../metrics.ts';
import type { NativeAddon } from '../native.ts';
import type { EgressPlan } from '../plan/index.ts';
import type { Decision } from '../policy/policy.ts';
import { keepServing } from '../server-errors.ts';
import { type Service, serviceLifetime } from '../service.ts';
import type { RamDir } from '../system/ram-dir.ts';
import { type AcceptedHandle, FastConnection, fastPathAddon, takeConnections } from '../transport/fast.ts';
import { socketFromHandle } from '../transport/node-internals.ts';
import { joinSockets } from '../transport/tunnel.ts';
import { EGRESS_VSOCK_PORT, type Transport } from '../transport/types.ts';
import { parseConnectHead } from './connect-head.ts';
import { boundedMemo } from './memo.ts';
import { encodeRequest, fdLink, parseResponse, type RelayLink, readFrame } from './protocol.ts';
import { startTransparent } from './transparent.ts';

/** The answer to a CONNECT whose tunnel is up (the fast path sends it as the pump's greeting). */
const CONNECT_OK = Buffer.from('HTTP/1.1 200 Connection established\r\n\r\n');

/** Targets whose decision and relay frame are kept (an app dials a few; a prober costs recomputes only). */
const TARGET_MEMO_MAX = 1024;

export interface EgressProxyDeps {
  /** Reaches the host relay (vsock 17002 at the plan's parentCid). */
  transport: Transport;
  logger: Logger;
  /** Default 0: a tunnel has no end the proxy could wait for, so close() cuts tunnels off at once. */
  closeGraceMs?: number;
  /** The RAM directory (transparent egress writes resolv.conf there when the image's is read-only). */
  ramDir?: () => Promise<RamDir>;
}

export interface EgressProxyService extends Service {
  env: Record<string, string>;
  /** Where it listens, as bound (the port differs from the plan's only when it asked for 0). */
  address: { host: string; port: number };
  port: number;
}

/** Writes a complete error response on a raw socket (CONNECT, parse errors) and closes it. */
function rawReply(socket: Socket, err: CloisterError): void {
  if (!socket.writable) return void socket.destroy();
  const { status, headers, body } = renderText(err);
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(
    `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\n${head}` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
  socket.destroySoon?.();
}

/** Splits `host:port`, `[v6]:port` or (defaultPort given) a bare host. Throws EgressBadTargetError. */
export function parseAuthority(authority: string, defaultPort?: number): { host: string; port: number } {
  if (authority.includes('@'))
    throw new EgressBadTargetError(`userinfo is not allowed in the target '${authority}'`);
  let host: string;
  let portText: string | undefined;
  if (authority.startsWith('[')) {
    const close = authority.indexOf(']');
    if (close < 0) throw new EgressBadTargetError(`unterminated IPv6 address in '${authority}'`);
    host = authority.slice(1, close);
    const rest = authority.slice(close + 1);
    if (rest !== '') {
      if (!rest.startsWith(':'))
        throw new EgressBadTargetError(`unexpected '${rest}' after the IPv6 address`);
      portText = rest.slice(1);
    }
  } else {
    const colon = authority.lastIndexOf(':');
    host = colon < 0 ? authority : authority.slice(0, colon);
    portText = colon < 0 ? undefined : authority.slice(colon + 1);
    if (host.includes(':')) throw new EgressBadTargetError(`IPv6 addresses need brackets: '${authority}'`);
  }
  if (host === '') throw new EgressBadTargetError(`no host in '${authority}'`);
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined)
      throw new EgressBadTargetError(`CONNECT address is missing a port: '${authority}'`);
    port = defaultPort;
  } else {
    if (!/^\d{1,5}$/.test(portText)) throw new EgressBadTargetError(`port '${portText}' is not a number`);
    port = Number(portText);
    if (port < 1 || port > 65535) throw new EgressBadTargetError(`port ${port} is out of range (1-65535)`);
  }
  return { host, port };
}

// RFC 9110 §7.6.1 connection-specific fields, plus the proxy's own (never forwarded upstream).
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
  'host',
]);

/** A reason phrase Node will write back (RFC 9112 §4: HTAB, SP, VCHAR, obs-text). */
const REASON_PHRASE = /^[\t\x20-\x7e\x80-\xff]*$/;

/** The request target without its query or fragment: what may be logged (a query can carry tokens). */
function withoutQuery(url: string): string {
  return url.replace(/[?#].*$/s, '');
}

/** Raw header pairs minus hop-by-hop fields and any field the Connection header names. */
function forwardHeaders(raw: string[]): string[] {
  const named = new Set<string>();
  for (let i = 0; i < raw.length; i += 2)
    if (raw[i]!.toLowerCase() === 'connection')
      for (const n of raw[i + 1]!.split(',')) named.add(n.trim().toLowerCase());
  const out: string[] = [];
  for (let i = 0; i < raw.length; i += 2) {
    const k = raw[i]!.toLowerCase();
    if (!HOP_BY_HOP.has(k) && !named.has(k)) out.push(raw[i]!, raw[i + 1]!);
  }
  return out;
}

export async function startEgressProxy(plan: EgressPlan, deps: EgressProxyDeps): Promise<EgressProxyService> {
  const { policy, settings } = plan;
  const log = deps.logger.child({ component: 'egress-proxy' });
  // Tunnels open or being opened. A slot is taken before dialling and given back when the upstream
  // stream closes (or the dial fails), so a burst of CONNECTs can never open more than max_tunnels.
  let slots = 0;
  /** Client connections (tunnels too, which the HTTP server lets go of) and upstream streams. */
  const live = new ConnectionSet();

  // The policy is fixed for the proxy's life, so a decision depends on (host, port) alone, and the relay
  // frame on the decision alone: both are computed once per target, not per tunnel (memo.ts).
  const check = boundedMemo(TARGET_MEMO_MAX, (key: string) => {
    const space = key.indexOf(' ');
    return policy.check(key.slice(space + 1), Number(key.slice(0, space)));
  });
  const frames = new WeakMap<Decision, Uint8Array>();
  function relayFrame(target: string, port: number, decision: Decision): Uint8Array {
    let frame = frames.get(decision);
    if (!frame) {
      frame = encodeRequest({ host: target, port, deny_ips: policy.resolvedDenyRanges(decision, port) });
      frames.set(decision, frame);
    }
    return frame;
  }

  function decide(host: string, port: number): Decision {
    return record(check(`${port} ${host}`), { host, port });
  }

  /** Counts and logs one decision: CONNECT, absolute-form and transparent connections alike. */
  function record(d: Decision, fields: Record<string, unknown>): Decision {
    egressDecisions.inc({ verdict: d.allowed ? 'allow' : 'deny', rule: d.rule ?? '(default deny)' });
    const entry = { ...fields, verdict: d.allowed ? 'allow' : 'deny', rule: d.rule, target: d.target };
    // Allowed at debug: an app's every call at info would fill the log ring and push its own lines out.
    if (d.allowed) log.debug(entry, `egress allowed: ${d.reason}`);
    else log.warn(entry, `egress denied: ${d.reason}`);
    return d;
  }

  /** Judges a target; throws 400 for an invalid one and 403 for a denied one. */
  function admit(host: string, port: number): { target: string; decision: Decision } {
    const d = decide(host, port);
    if (d.allowed) return { target: d.target!, decision: d };
    if (d.target === undefined) throw new EgressBadTargetError(`bad target: ${d.reason}`);
    throw new EgressDeniedError(`blocked by egress security policy: ${d.reason}`);
  }

  /**
   * Opens a stream to the host relay over `link` and asks it to dial target:port. The tunnel slot is
   * taken here; `release` gives it back and must be called once the stream is gone.
   */
  async function openUpstreamVia<S>(
    link: RelayLink<S>,
    target: string,
    port: number,
    decision: Decision,
  ): Promise<{ upstream: S; release: () => void }> {
    if (slots >= settings.max_tunnels)
      throw new EgressTunnelLimitError(
        `too many open tunnels (egress.max_tunnels = ${settings.max_tunnels})`,
      );
    slots++;
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      slots--;
    };
    const deadline = Date.now() + settings.connect_timeout_ms;
    const timedOut = () =>
      new EgressTimeoutError(
        `timed out after ${settings.connect_timeout_ms} ms connecting to ${target}:${port}`,
      );
    let sock: S | undefined;
    let gaveUp = false;
    try {
      const connecting = link.connect(settings.connect_timeout_ms);
      // A stream that connects after we gave up must not leak.
      connecting.then(
        (s) => {
          if (gaveUp) link.destroy(s);
        },
        () => {},
      );
      sock = await withDeadline(connecting, settings.connect_timeout_ms, timedOut).catch(
        (e: NodeJS.ErrnoException) => {
          if (e instanceof EgressTimeoutError) throw e;
          // The fast path's own connect timer has the same length and may fire first: still a 504.
          if (e.code === 'ETIMEDOUT') throw timedOut();
          throw new EgressRelayUnreachableError(
            `cannot reach the host egress relay: ${e.code ?? e.message}`,
            {
              cause: e,
            },
          );
        },
      );
      link.send(sock, relayFrame(target, port, decision));
      const frame = await link.readFrame(sock, Math.max(1, deadline - Date.now())).catch((e: Error) => {
        if (e instanceof FrameError && e.errno === 'ETIMEDOUT')
          throw new EgressTimeoutError(
            `timed out after ${settings.connect_timeout_ms} ms connecting to ${target}:${port}`,
          );
        throw new EgressRelayProtocolError(`host egress relay failed: ${e.message}`, { cause: e });
      });
      let reply: ReturnType<typeof parseResponse>;
      try {
        reply = parseResponse(frame);
      } catch (e) {
        throw new EgressRelayProtocolError(`host egress relay sent a bad reply: ${(e as Error).message}`, {
          cause: e,
        });
      }
      if (!reply.ok) {
        // 110 ETIMEDOUT -> 504; 13 EACCES (the relay refused a resolved address or its own policy) -> 403.
        const message = `${target}:${port}: os_err: ${reply.os_code}: ${reply.message}`;
        if (reply.os_code === 110) throw new EgressTimeoutError(message);
        if (reply.os_code === 13) throw new EgressRefusedError(message);
        throw new EgressUpstreamError(message);
      }
      return { upstream: sock, release };
    } catch (e) {
      gaveUp = true;
      if (sock !== undefined) link.destroy(sock);
      release();
      throw e;
    }
  }

  const socketLink: RelayLink<Socket> = {
    connect: () => deps.transport.connect(plan.parentCid, EGRESS_VSOCK_PORT),
    send: (s, frame) => void s.write(frame),
    readFrame,
    destroy: (s) => s.destroy(),
  };

  /** openUpstreamVia on a Node socket, whose slot is given back when the socket closes. */
  async function openUpstream(target: string, port: number, decision: Decision): Promise<Socket> {
    const { upstream, release } = await openUpstreamVia(socketLink, target, port, decision);
    upstream.once('close', release);
    if (upstream.destroyed) release();
    return upstream;
  }

  /** A tunnel ended, on either connection path: the open-tunnel gauge, the byte counters, one debug line. */
  function tunnelClosed(engine: string, up: number, down: number): void {
    egressOpenTunnels.dec();
    egressBytes.inc({ direction: 'up' }, up);
    egressBytes.inc({ direction: 'down' }, down);
    log.debug({ engine, up, down }, 'tunnel closed');
  }

  function track(client: Socket, upstream: Socket): void {
    live.add(client, upstream);
    egressOpenTunnels.inc();
    joinSockets(client, upstream, {
      idleTimeoutMs: settings.idle_timeout_ms,
      onClose: ({ aRead, aWritten, engine }) => tunnelClosed(engine, aRead, aWritten),
    });
  }

  async function onConnect(req: IncomingMessage, client: Socket, head: Buffer): Promise<void> {
    client.on('error', () => client.destroy());
    try {
      const { host, port } = parseAuthority(req.url ?? '');
      const { target, decision } = admit(host, port);
      const upstream = await openUpstream(target, port, decision);
      if (client.destroyed) return void upstream.destroy();
      client.setTimeout(0);
      client.write(CONNECT_OK);
      if (head.length > 0) upstream.write(head);
      track(client, upstream);
    } catch (e) {
      const err = toCloisterError(e);
      if (err.status >= 500) log.warn({ url: req.url, status: err.status, err }, 'CONNECT failed');
      rawReply(client, err);
    }
  }

  async function onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const fail = (err: CloisterError) => {
      if (res.headersSent) return void res.destroy();
      const { status, headers, body } = renderText(err);
      res.writeHead(status, { ...headers, connection: 'close' });
      res.end(body);
      req.resume();
    };
    // What a 5xx is logged with: never the query string, which may carry tokens.
    let where: Record<string, unknown> = { url: withoutQuery(req.url ?? '') };
    try {
      const url = req.url ?? '';
      const m = /^http:\/\/([^/?#]*)([^#]*)/i.exec(url);
      if (!m) {
        if (/^https:\/\//i.test(url))
          throw new BadRequestError(`use CONNECT for https targets, not '${url}'`);
        throw new BadRequestError(
          `URI is missing a host: send absolute-form (http://host/path) or CONNECT, not '${url}'`,
        );
      }
      // RFC 9112 §6.1: a message with both is a smuggling vector; llhttp refuses most, this is the backstop.
      const te = req.headers['transfer-encoding'];
      if (te !== undefined && req.headers['content-length'] !== undefined)
        throw new BadRequestError('both Content-Length and Transfer-Encoding: refused');
      // Transfer-Encoding is hop-by-hop, so the outgoing request frames the body itself. Node frames a
      // GET, HEAD, DELETE or OPTIONS body raw (no chunking by default for those methods): the origin
      // would read it as a second request. Say chunked explicitly, for every method; a coding besides
      // chunked (gzip, chunked) could not be passed on as it came, so it is refused (RFC 9112 §6.1).
      if (te !== undefined && te.trim().toLowerCase() !== 'chunked')
        throw new EgressTransferCodingError(
          `Transfer-Encoding '${te}' is not supported: send chunked or Content-Length`,
        );
      const { host, port } = parseAuthority(m[1]!, 80);
      // RFC 9112 §3.2.4: OPTIONS for the whole server is "*" in origin form; otherwise an empty path is "/".
      let path = m[2] || (req.method === 'OPTIONS' ? '*' : '/');
      if (!path.startsWith('/') && path !== '*') path = `/${path}`; // "http://h?q" -> "/?q"
      where = { host, port, path: withoutQuery(path) };
      const { target, decision } = admit(host, port);
      const upstream = await openUpstream(target, port, decision);
      live.add(upstream);
      egressOpenTunnels.inc();
      upstream.once('close', () => {
        egressOpenTunnels.dec();
        egressBytes.inc({ direction: 'up' }, upstream.bytesWritten);
        egressBytes.inc({ direction: 'down' }, upstream.bytesRead);
      });
      // Host always names what is dialled; the client's own Host header (which may disagree) is dropped.
      const hostHeader = `${target.includes(':') ? `[${target}]` : target}${port === 80 ? '' : `:${port}`}`;
      if (req.headers.host !== undefined && req.headers.host.toLowerCase() !== hostHeader)
        log.info(
          { claimed: req.headers.host, target: hostHeader },
          'replaced a Host header that disagreed with the URL',
        );
      const out = httpRequest({
        method: req.method,
        path,
        headers: [
          'Host',
          hostHeader,
          ...forwardHeaders(req.rawHeaders),
          ...(te === undefined ? [] : ['Transfer-Encoding', 'chunked']),
        ] as unknown as Record<string, string>,
        setHost: false,
        createConnection: () => upstream,
      });
      // readFrame left the stream paused; the HTTP client's own 'data' listener is in place by 'socket'.
      out.once('socket', (s) => s.resume());
      let failed = false;
      const badUpstream = (why: string) => {
        upstream.destroy();
        // The first failure answers; an 'error' that follows a refused head must not cut that answer off.
        if (failed) return;
        failed = true;
        log.warn({ ...where, status: 502 }, `upstream ${target}:${port} ${why}`);
        fail(new EgressUpstreamError(`upstream ${target}:${port} ${why}`));
      };
      // The origin (or the host relay in front of it) is hostile: a head Node cannot write back must
      // become a 502 here, never a throw inside this listener (an uncaught exception, and no answer).
      out.on('response', (up) => {
        up.on('error', () => res.destroy());
        const status = up.statusCode ?? 0;
        // Node consumes 100-199 itself except 101, which only an upgrade may answer with.
        if (status < 200 || status > 999) return badUpstream(`answered with status ${status}`);
        if (!REASON_PHRASE.test(up.statusMessage ?? ''))
          return badUpstream('answered with control characters in the reason phrase');
        try {
          res.writeHead(status, up.statusMessage, forwardHeaders(up.rawHeaders));
        } catch (e) {
          return badUpstream(`sent a response head that cannot be passed on: ${(e as Error).message}`);
        }
        up.pipe(res);
      });
      // A 101 with an Upgrade header: Node hands over the socket, the app asked for no upgrade.
      out.on('upgrade', (_up, sock: Socket) => {
        sock.destroy();
        badUpstream('answered with status 101 (Switching Protocols) to a request that asked for no upgrade');
      });
      out.on('error', (e) => {
        badUpstream(`failed: ${e.message}`);
      });
      res.on('close', () => {
        if (!res.writableFinished) upstream.destroy();
      });
      req.pipe(out);
    } catch (e) {
      const err = toCloisterError(e);
      if (err.status >= 500) log.warn({ ...where, status: err.status, err }, 'request failed');
      fail(err);
    }
  }

  const server = createServer({
    maxHeaderSize: settings.max_header_bytes,
    headersTimeout: settings.header_timeout_ms,
    requestTimeout: 0,
    keepAliveTimeout: Math.min(settings.idle_timeout_ms, 60_000),
    // How often slow-header connections are swept; the default 30 s would let slowloris linger.
    connectionsCheckingInterval: Math.max(100, Math.min(1000, settings.header_timeout_ms / 2)),
  });
  server.timeout = settings.idle_timeout_ms;
  server.on('connect', (req: IncomingMessage, sock: Socket, head: Buffer) => void onConnect(req, sock, head));
  server.on('request', (req, res) => void onRequest(req, res));
  server.on('upgrade', (_req: IncomingMessage, sock: Socket) =>
    rawReply(
      sock,
      new EgressUpgradeError('protocol upgrades through the proxy are not supported; tunnel with CONNECT'),
    ),
  );
  /** What a request head that Node's parser (or the fast path's wait) refused is answered with. */
  function headRefusal(err: NodeJS.ErrnoException): CloisterError {
    const code = err.code ?? '';
    return code === 'HPE_HEADER_OVERFLOW'
      ? new HeadersTooLargeError(
          `request headers exceed ${settings.max_header_bytes} bytes (egress.max_header_bytes)`,
        )
      : code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? new RequestTimeoutError(
            `request headers not received within ${settings.header_timeout_ms} ms (egress.header_timeout_ms)`,
          )
        : new MalformedHttpError(`malformed request: ${(err as { reason?: string }).reason ?? err.message}`, {
            cause: err,
          });
  }

  server.on('clientError', (err: NodeJS.ErrnoException, sock: Socket) => {
    const code = err.code ?? '';
    const refusal = headRefusal(err);
    if (code !== 'ECONNRESET') log.info({ code }, refusal.message);
    // A response already streaming on this connection cannot be followed by a raw one: close instead.
    if (responseStarted(sock)) return void sock.destroy();
    rawReply(sock, refusal);
  });

  let transparent: { close(): Promise<void> } | null = null;
  const lifetime = serviceLifetime({
    // Transparent mode's rules and listeners go first: the app's new connections then fail at once.
    stopAccepting: async () => {
      await transparent?.close();
      return closeServer(server);
    },
    connections: live,
    graceMs: deps.closeGraceMs ?? 0,
  });
  trackConnections(server, live, () => lifetime.closing);
  const bound = (await listenOn(server, plan.port)).port;

  // The fast path (transport/fast.ts): a CONNECT whose complete head is in the first bytes is served
  // without Node's HTTP server or a net.Socket; every other connection goes to the server as before.
  const native = fastPathAddon();
  const connectFd = deps.transport.connectFd?.bind(deps.transport);
  if (native && connectFd) {
    const relayLink = fdLink(native, (ms) => connectFd(plan.parentCid, EGRESS_VSOCK_PORT, ms));
    const deliver = takeConnections(server, (h) => {
      const conn = new FastConnection(native, h);
      live.add(conn);
      void serveConnectFast(native, relayLink, deliver, conn);
      return true;
    });
  }

  /** One accepted connection on the fast path, from its first bytes to a running tunnel or an answer. */
  async function serveConnectFast(
    native: NativeAddon,
    relayLink: RelayLink<number>,
    deliver: (h: AcceptedHandle) => void,
    conn: FastConnection,
  ): Promise<void> {
    const h = conn.handle;
    const reply = (err: CloisterError) => {
      const sock = socketFromHandle(h, { readable: true, writable: true });
      sock.on('error', () => sock.destroy());
      live.add(sock);
      conn.finish();
      rawReply(sock, err);
    };
    let bytes: Buffer;
    try {
      bytes = await native.peekHead(h.fd, settings.max_header_bytes, settings.header_timeout_ms);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ETIMEDOUT' || conn.destroyed) return conn.drop();
      // Nothing at all within header_timeout_ms: the 408 Node's server gives a slow head.
      const code = 'ERR_HTTP_REQUEST_TIMEOUT';
      const refusal = headRefusal(Object.assign(new Error('request timeout'), { code }));
      log.info({ code }, refusal.message);
      return reply(refusal);
    }
    if (bytes.length === 0 || conn.destroyed) return conn.drop();
    const head = parseConnectHead(bytes, settings.max_header_bytes);
    // Partial, not CONNECT, or anything unusual: Node's HTTP server reads the same bytes (only peeked).
    if (!head) {
      conn.finish();
      return deliver(h);
    }
    let release: (() => void) | undefined;
    try {
      native.recvDiscard(h.fd, head.length);
      const { host, port } = parseAuthority(head.authority);
      const { target, decision } = admit(host, port);
      const opened = await openUpstreamVia(relayLink, target, port, decision);
      release = opened.release;
      h.setNoDelay?.(true);
      // join() takes the relay stream over whatever happens; false: the proxy closed meanwhile.
      const joined = conn.join(opened.upstream, {
        idleTimeoutMs: settings.idle_timeout_ms,
        greetA: CONNECT_OK,
        onClose: ({ aToB, bToA }) => {
          opened.release();
          tunnelClosed('splice', aToB, bToA);
        },
      });
      if (joined) egressOpenTunnels.inc();
      else opened.release();
    } catch (e) {
      release?.();
      const err = toCloisterError(e);
      if (err.status >= 500) log.warn({ url: head.authority, status: err.status, err }, 'CONNECT failed');
      if (conn.destroyed) return conn.drop();
      reply(err);
    }
  }

  keepServing(server, log, 'egress proxy', { port: bound });
  const url = `http://127.0.0.1:${bound}/`;
  log.info({ port: bound, allow: plan.rules.allow, deny: plan.rules.deny }, 'egress proxy listening');
  // Transparent egress (transparent.ts) shares this proxy's decisions, tunnel slots and tunnels.
  if (plan.transparent)
    transparent = await startTransparent(plan.transparent, {
      policy,
      check: (host: string, port: number) => check(`${port} ${host}`),
      record,
      openUpstream,
      track,
      connections: live,
      connectRelay: () => deps.transport.connect(plan.parentCid, EGRESS_VSOCK_PORT),
      ...(deps.ramDir
        ? {
            ramFile: async (name: string, content: string) =>
              (await deps.ramDir!()).writeFile(name, Buffer.from(content), { mode: 0o444 }),
          }
        : {}),
      logger: log,
      settings,
    }).catch(async (e: unknown) => {
      await lifetime.destroy();
      throw e;
    });
  return {
    address: { host: '127.0.0.1', port: bound },
    port: bound,
    env: {
      HTTP_PROXY: url,
      HTTPS_PROXY: url,
      http_proxy: url,
      https_proxy: url,
      NO_PROXY: 'localhost,127.0.0.1,::1',
      no_proxy: 'localhost,127.0.0.1,::1',
    },
    close: lifetime.close,
    destroy: lifetime.destroy,
  };
}
