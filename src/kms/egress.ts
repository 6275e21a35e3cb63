// The KMS proxy's only way out of the enclave is the egress proxy (127.0.0.1:<egress.proxy_port>):
//  - dialThrough: an HTTP CONNECT tunnel (used for KMS, https or http);
//  - httpThrough: one small plain-HTTP request in absolute form (used for IMDS and container credentials).
// Without an egress proxy configured (tests, a host-side run) both go direct.

import { readFileSync } from 'node:fs';
import { Agent, type ClientRequestArgs, request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import * as tls from 'node:tls';
import { rootCertificates, type TLSSocket, connect as tlsConnect } from 'node:tls';

export interface EgressProxy {
  host: string;
  port: number;
}

export class EgressError extends Error {
  constructor(
    message: string,
    readonly timeout = false,
  ) {
    super(message);
    this.name = 'EgressError';
  }
}

/** Opens a TCP stream to host:port, through the egress proxy's CONNECT when one is configured. */
export function dialThrough(
  proxy: EgressProxy | null,
  host: string,
  port: number,
  timeoutMs: number,
): Promise<Socket> {
  return new Promise((resolve, reject) => {
    // No Nagle: Node's own Agent sets noDelay on the sockets it opens, and this one replaces its
    // createConnection. A request or reply written in pieces (TLS records) must not wait for an ACK.
    const sock = netConnect({ host: proxy?.host ?? host, port: proxy?.port ?? port, noDelay: true });
    let settled = false;
    const done = (err: Error | null) => {
      if (settled) return;
      settled = true;
      sock.setTimeout(0);
      if (err) {
        sock.destroy();
        reject(err);
      } else resolve(sock);
    };
    sock.setTimeout(timeoutMs, () => done(new EgressError(`timed out connecting to ${host}:${port}`, true)));
    sock.once('error', (err) =>
      done(
        new EgressError(
          `cannot connect to ${proxy ? `the egress proxy ${proxy.host}:${proxy.port}` : `${host}:${port}`}: ${err.message}`,
        ),
      ),
    );
    if (!proxy) {
      sock.once('connect', () => done(null));
      return;
    }
    const authority = host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
    sock.once('connect', () => sock.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`));
    // Read the reply in paused mode ('readable' + read()): once our listener is gone the stream is neither
    // flowing nor paused, so the HTTP client or TLS layer that takes it over starts it as usual, and
    // bytes after the reply head (unshifted back) are not lost.
    let head = Buffer.alloc(0);
    const onReadable = () => {
      for (let chunk = sock.read() as Buffer | null; chunk !== null; chunk = sock.read() as Buffer | null) {
        head = Buffer.concat([head, chunk]);
      }
      const end = head.indexOf('\r\n\r\n');
      if (end === -1) {
        if (head.length > 16384) done(new EgressError('egress proxy sent an oversized CONNECT reply'));
        return;
      }
      sock.off('readable', onReadable);
      const statusLine = head.subarray(0, head.indexOf('\r\n')).toString('latin1');
      const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(statusLine)?.[1] ?? 0);
      if (status !== 200) {
        const body = head
          .subarray(end + 4)
          .toString('utf8')
          .trim()
          .slice(0, 300);
        done(
          new EgressError(
            `egress proxy refused CONNECT ${authority}: ${statusLine}${body ? ` (${body})` : ''}`,
          ),
        );
        return;
      }
      const rest = head.subarray(end + 4);
      if (rest.length > 0) sock.unshift(rest);
      done(null);
    };
    sock.on('readable', onReadable);
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

function startTls(sock: Socket, servername: string, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const t = tlsConnect({ socket: sock, servername, ca: trustedRoots(), ALPNProtocols: ['http/1.1'] });
    const timer = setTimeout(() => {
      t.destroy();
      reject(new EgressError(`TLS handshake with ${servername} timed out`, true));
    }, timeoutMs);
    t.once('secureConnect', () => {
      clearTimeout(timer);
      resolve(t);
    });
    t.once('error', (err) => {
      clearTimeout(timer);
      sock.destroy();
      reject(new EgressError(`TLS with ${servername} failed: ${err.message}`));
    });
  });
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
