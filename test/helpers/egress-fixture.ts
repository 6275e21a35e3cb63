// Shared set-up for the egress tests: the full path in one process
//   client -> proxy (EmulatedTransport cid 16) -> unix "vsock" -> relay (cid 2) -> local server
// plus local upstream servers and a self-signed certificate. Everything listens on loopback.
import { createServer as createHttpServer, type IncomingMessage, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import type { Config } from '../../src/config/types.ts';
import { DEFAULT_SETTINGS, type Settings } from '../../src/config/types.ts';
import { type EgressProxyService, startEgressProxy } from '../../src/egress/proxy.ts';
import { type RelayDeps, type RelaySlice, startEgressRelay } from '../../src/egress/relay.ts';
import { createLogger, type Logger } from '../../src/log/logger.ts';
import { planEgress } from '../../src/plan/index.ts';
import { EmulatedTransport } from '../../src/transport/emulated.ts';
import { tempDir as makeTempDir } from './fixtures/temp-dir.ts';
import { writeSelfSigned } from './fixtures/tls.ts';

export const quietLogger = () => createLogger({ level: process.env.EGRESS_TEST_LOG ?? 'silent' });

export function tempDir(t: TestContext, prefix = 'cloister-egress-'): string {
  return makeTempDir(t, prefix);
}

export function makeConfig(
  egress: { allow?: string[]; deny?: string[]; proxy_port?: number },
  settings: Partial<Settings['egress']> = {},
): Config {
  return {
    manifestPath: '/dev/null',
    configDir: '/dev/null',
    manifest: { version: 'v1', name: 'egress-test', target: 't', sources: { app: 'a' }, egress },
    settings: { ...DEFAULT_SETTINGS, egress: { ...DEFAULT_SETTINGS.egress, ...settings } },
  };
}

export interface Path {
  proxy: EgressProxyService;
  proxyPort: number;
  proxyUrl: string;
  vsockDir: string;
}

/** Proxy and relay in this process over a shared emulated-vsock directory. */
export async function startPath(
  t: TestContext,
  egress: { allow?: string[]; deny?: string[] },
  opts: {
    settings?: Partial<Settings['egress']>;
    relay?: RelaySlice & Pick<RelayDeps, 'lookup'>;
    noRelay?: boolean;
    /** The proxy's logger (default: silent). */
    logger?: Logger;
  } = {},
): Promise<Path> {
  const vsockDir = tempDir(t, 'cloister-vsock-');
  if (!opts.noRelay) {
    const { lookup, ...relaySlice } = opts.relay ?? {};
    const relay = await startEgressRelay(relaySlice, {
      transport: new EmulatedTransport(vsockDir, 2),
      logger: quietLogger(),
      lookup,
    });
    t.after(() => relay.close());
  }
  const proxy = await startEgressProxy(planEgress(makeConfig({ ...egress, proxy_port: 0 }, opts.settings))!, {
    transport: new EmulatedTransport(vsockDir, 16),
    logger: opts.logger ?? quietLogger(),
  });
  t.after(() => proxy.close());
  return { proxy, proxyPort: proxy.port!, proxyUrl: proxy.env!.HTTPS_PROXY!, vsockDir };
}

export function listen(
  server: Server | ReturnType<typeof createNetServer>,
  host = '127.0.0.1',
): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, host, () => resolve((server.address() as { port: number }).port));
  });
}

/** Plain HTTP server answering with a JSON description of the request it got. */
export async function startEchoHttp(t: TestContext, host = '127.0.0.1'): Promise<number> {
  const server = createHttpServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.stringify({
        method: req.method,
        url: req.url,
        rawHeaders: req.rawHeaders,
        body: Buffer.concat(chunks).toString(),
      });
      res.writeHead(200, {
        'content-type': 'application/json',
        'x-upstream': 'echo',
        'keep-alive': 'timeout=5',
      });
      res.end(body);
    });
  });
  const port = await listen(server, host);
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return port;
}

export interface Cert {
  dir: string;
  key: string;
  cert: string;
  certPath: string;
}

/** A self-signed certificate for 127.0.0.1, ::1, localhost and `host` (Enclaver's parent alias), by openssl. */
export function makeCert(t: TestContext): Cert {
  const dir = tempDir(t, 'cloister-cert-');
  const made = writeSelfSigned(
    join(dir, 'key.pem'),
    join(dir, 'cert.pem'),
    'IP:127.0.0.1,IP:::1,DNS:localhost,DNS:host',
  );
  return { dir, key: made.key, cert: made.cert, certPath: made.certPath };
}

export async function startHttps(t: TestContext, cert: Cert, body = 'hello over tls'): Promise<number> {
  const server = createHttpsServer({ key: cert.key, cert: cert.cert }, (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end(`${body} ${req.method} ${req.url}`);
  });
  const port = await listen(server as unknown as Server);
  t.after(() => {
    server.closeAllConnections();
    server.close();
  });
  return port;
}

/** TCP server running `handler` per connection (allowHalfOpen, so it can answer after the client's FIN). */
export async function startTcp(
  t: TestContext,
  handler: (s: Socket) => void,
  host = '127.0.0.1',
): Promise<number> {
  const server = createNetServer({ allowHalfOpen: true }, handler);
  const conns = new Set<Socket>();
  server.on('connection', (s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => {});
  });
  const port = await listen(server, host);
  t.after(() => {
    for (const s of conns) s.destroy();
    server.close();
  });
  return port;
}

/** A port on 127.0.0.1 that nothing listens on (bound, then released). */
export async function deadPort(): Promise<number> {
  const s = createNetServer();
  const port = await listen(s);
  await new Promise((r) => s.close(r));
  return port;
}

/**
 * Sends raw bytes to the proxy and returns everything it answers until it closes the connection
 * (or until `until` matches the accumulated text, then closes itself).
 */
export function rawExchange(
  port: number,
  data: string | Buffer,
  until?: RegExp,
  timeoutMs = 10_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port, host: '127.0.0.1' });
    let out = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer within ${timeoutMs} ms; got ${JSON.stringify(out)}`));
    }, timeoutMs);
    s.on('data', (d) => {
      out += d.toString('latin1');
      if (until?.test(out)) {
        clearTimeout(timer);
        s.destroy();
        resolve(out);
      }
    });
    s.on('error', () => {});
    s.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    s.write(data);
  });
}

/** Opens a CONNECT tunnel through the proxy; resolves with the socket once 200 arrived. */
export function connectTunnel(proxyPort: number, authority: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ port: proxyPort, host: '127.0.0.1', allowHalfOpen: true });
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      const status = head.subarray(0, end).toString('latin1');
      if (!/^HTTP\/1\.1 200/.test(status)) {
        s.destroy();
        return reject(new Error(`CONNECT ${authority}: ${head.toString('latin1')}`));
      }
      s.pause();
      const rest = head.subarray(end + 4);
      if (rest.length) s.unshift(rest);
      resolve(s);
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  });
}
