// The KMS proxy's only way out of the enclave is the egress proxy (127.0.0.1:<egress.proxy_port>):
//  - dialThrough: an HTTP CONNECT tunnel (used for KMS, https or http);
//  - httpThrough: one small plain-HTTP request in absolute form (used for IMDS and container credentials).
// Without an egress proxy configured (tests, a host-side run) both go direct.
// All of it is Node's http/tls client: CONNECT through http.request, TLS over the tunnel through
// tls.connect({socket}), pooling through an http.Agent whose createConnection opens the tunnel. Why not
// undici's ProxyAgent: docs/decisions.md, "Outbound HTTP through the egress proxy".

import { readFileSync } from 'node:fs';
import { Agent, type ClientRequest, type ClientRequestArgs, request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { rootCertificates, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { onceWithin, withDeadline } from '../deadline.ts';

export interface EgressProxy {
  host: string;
  port: number;
}

export class EgressError extends Error {
  constructor(
    message: string,
    readonly timeout = false,
    /** The egress proxy's x-cloister-error code when it refused (CLO_ERR_EGRESS_DENIED...). */
    readonly refusal?: string,
  ) {
    super(message);
    this.name = 'EgressError';
  }
}

/**
 * Opens a TCP stream to host:port, through the egress proxy's CONNECT when one is configured. The
 * CONNECT is Node's own (http.request with method CONNECT and its 'connect' event): Node's HTTP parser
 * reads the reply and hands over the socket with any bytes that came after the reply head.
 */
export async function dialThrough(
  proxy: EgressProxy | null,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<Socket> {
  const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
  const where = proxy ? `the egress proxy ${proxy.host}:${proxy.port}` : authority;
  let connecting: Socket | undefined;
  let req: ClientRequest | undefined;
  let settle!: (err: Error | null, sock?: Socket) => void;
  const dialing = new Promise<Socket>((resolve, reject) => {
    let settled = false;
    settle = (err, sock) => {
      if (settled) return;
      settled = true;
      if (err) {
        sock?.destroy();
        reject(err);
        return;
      }
      // No Nagle: Node's own Agent sets noDelay on the sockets it opens, and this one replaces its
      // createConnection. A request or reply written in pieces (TLS records) must not wait for an ACK.
      sock!.setNoDelay(true);
      resolve(sock!);
    };
    if (!proxy) {
      connecting = netConnect({ host, port });
      connecting.once('connect', () => settle(null, connecting));
      connecting.once('error', (err) =>
        settle(new EgressError(`cannot connect to ${where}: ${err.message}`)),
      );
      return;
    }
    req = httpRequest({
      host: proxy.host,
      port: proxy.port,
      method: 'CONNECT',
      path: authority,
      headers: { host: authority },
      agent: false,
    });
    req.once('connect', (res, sock, head) => {
      if (res.statusCode !== 200) {
        // Node does not read a body after a CONNECT reply; whatever came with the head is the reason.
        const reason = head.toString('utf8').trim().slice(0, 300);
        const code = res.headers['x-cloister-error'];
        settle(
          new EgressError(
            `egress proxy refused CONNECT ${authority}: HTTP/${res.httpVersion} ${res.statusCode} ${res.statusMessage}${reason ? ` (${reason})` : ''}`,
            false,
            typeof code === 'string' && /^CLO_ERR_[A-Z_]+$/.test(code) ? code : undefined,
          ),
          sock,
        );
        return;
      }
      if (head.length > 0) sock.unshift(head);
      settle(null, sock);
    });
    req.once('error', (err) => settle(new EgressError(`cannot connect to ${where}: ${err.message}`)));
    req.end();
  });
  return withDeadline(dialing, timeoutMs, () => {
    const err = new EgressError(`timed out connecting to ${authority}`, true);
    if (connecting) connecting.destroy(err);
    else req?.destroy(err);
    settle(err);
    return err;
  });
}

let trustCache: string[] | undefined;

/** System roots, Node's bundled roots and NODE_EXTRA_CA_CERTS (setting `ca` replaces Node's default list). */
export function trustedRoots(): string[] {
  if (trustCache) return trustCache;
  const list = new Set<string>(rootCertificates);
  const getCa = (tls as unknown as { getCACertificates?: (kind: string) => string[] }).getCACertificates;
  if (getCa) {
    for (const kind of ['system', 'extra']) {
      try {
        for (const c of getCa(kind)) list.add(c);
      } catch {}
    }
  } else {
    for (const path of ['/etc/ssl/certs/ca-certificates.crt', '/etc/pki/tls/certs/ca-bundle.crt']) {
      try {
        list.add(readFileSync(path, 'utf8'));
        break;
      } catch {}
    }
  }
  const extra = process.env.NODE_EXTRA_CA_CERTS;
  if (extra) {
    try {
      list.add(readFileSync(extra, 'utf8'));
    } catch {}
  }
  trustCache = [...list];
  return trustCache;
}

/**
 * A keep-alive agent whose connections go through the egress proxy; for https it runs TLS over the
 * tunnel (verified, SNI = the KMS host). Pooling matters: a fresh CONNECT + TLS handshake per KMS call
 * would cost more than everything else the proxy does.
 */
export class TunnelAgent extends Agent {
  constructor(
    private readonly target: URL,
    private readonly proxy: EgressProxy | null,
    private readonly timeoutMs: number,
  ) {
    // Idle connections close after 20 s, before KMS or a middlebox would drop them under us.
    super({ keepAlive: true, keepAliveMsecs: 30_000, timeout: 20_000, scheduling: 'lifo' });
  }

  override createConnection(
    _opts: ClientRequestArgs,
    cb?: (err: Error | null, stream: Duplex) => void,
  ): undefined {
    const host = this.target.hostname.replace(/^\[|\]$/g, '');
    const https = this.target.protocol === 'https:';
    const port = Number(this.target.port || (https ? 443 : 80));
    dialThrough(this.proxy, host, port, this.timeoutMs)
      .then((sock): Promise<Socket> => (https ? startTls(sock, host, this.timeoutMs) : Promise.resolve(sock)))
      .then(
        (s) => cb?.(null, s),
        (err: Error) => cb?.(err, undefined as unknown as Duplex),
      );
    return undefined;
  }
}

async function startTls(sock: Socket, servername: string, timeoutMs: number): Promise<TLSSocket> {
  const t = tlsConnect({ socket: sock, servername, ca: trustedRoots(), ALPNProtocols: ['http/1.1'] });
  try {
    await onceWithin(t, 'secureConnect', timeoutMs, () => {
      t.destroy();
      return new EgressError(`TLS handshake with ${servername} timed out`, true);
    });
    // A later error, before the HTTP client has its own listener on the socket, must not go uncaught.
    t.once('error', () => sock.destroy());
    return t;
  } catch (err) {
    if (err instanceof EgressError) throw err;
    sock.destroy();
    throw new EgressError(`TLS with ${servername} failed: ${(err as Error).message}`);
  }
}

export interface SmallResponse {
  status: number;
  body: Buffer;
}

/** One plain-HTTP request, in absolute form through the egress proxy (or direct without one). */
export function httpThrough(
  proxy: EgressProxy | null,
  url: URL,
  init: { method?: string; headers?: Record<string, string>; timeoutMs: number; maxBytes?: number },
): Promise<SmallResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({
      host: proxy?.host ?? url.hostname.replace(/^\[|\]$/g, ''),
      port: proxy?.port ?? Number(url.port || 80),
      method: init.method ?? 'GET',
      path: proxy ? url.href : `${url.pathname}${url.search}`,
      headers: { ...init.headers, host: url.host },
      agent: false,
    });
    req.setTimeout(init.timeoutMs, () => req.destroy(new EgressError(`${url.origin}: timed out`, true)));
    req.on('error', (err) =>
      reject(err instanceof EgressError ? err : new EgressError(`${url.origin}: ${err.message}`)),
    );
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > (init.maxBytes ?? 65536))
          req.destroy(new EgressError(`${url.origin}: response too large`));
        else chunks.push(c);
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.end();
  });
}
