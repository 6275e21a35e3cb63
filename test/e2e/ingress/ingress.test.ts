// Ingress through both sides over the emulated vsock: client -> host listener -> Unix socket ->
// enclave side -> 127.0.0.1:<port> (the app). Real sockets, real curl, real TLS (openssl-made cert).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Duplex } from 'node:stream';
import { type TestContext, test } from 'node:test';
import { createSecureContext, connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { startMetricsServer } from '../../../src/api/metrics-server.ts';
import { type Config, DEFAULT_SETTINGS } from '../../../src/config/types.ts';
import { resolveTlsMaterial, startIngress } from '../../../src/ingress/enclave.ts';
import { startHostIngress } from '../../../src/ingress/host.ts';
import { decodeProxyV2, encodeProxyV2 } from '../../../src/ingress/proxy-protocol.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { buildPlan } from '../../../src/plan/index.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { freePort } from '../../helpers/fixtures/ports.ts';
import { writeSelfSigned } from '../../helpers/fixtures/tls.ts';

const run = promisify(execFile);

const logger = createLogger({ level: process.env.DEBUG_INGRESS ? 'debug' : 'silent' });

function listen(server: Server, port = 0): Promise<number> {
  return new Promise((res, rej) => {
    server.once('error', rej);
    server.listen(port, '127.0.0.1', () => {
      const a = server.address();
      res(typeof a === 'object' && a ? a.port : 0);
    });
  });
}

interface Chain {
  hostPort: number;
  dir: string;
  /** Connections that have reached the enclave side so far. */
  arrived(): number;
}

async function chain(
  t: TestContext,
  appPort: number,
  opts: { tls?: { key: string; cert: string }; proxyProtocol?: boolean; upstreamRetryMs?: number } = {},
): Promise<Chain> {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-ingress-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // The enclave side's listeners are watched, so a test can tell when a client has reached that side.
  const transport = new EmulatedTransport(dir, 16);
  let arrived = 0;
  const listenOn = transport.listen.bind(transport);
  const servers = new Set<unknown>();
  transport.listen = async (port, listenOpts) => {
    const server = await listenOn(port, listenOpts);
    servers.add(server);
    server.on('connection', () => arrived++);
    return server;
  };
  // A plain port's connections take the fast path (src/transport/fast.ts): no 'connection' event there.
  const onFast = (m: unknown) => {
    if (servers.has((m as { server: unknown }).server)) arrived++;
  };
  subscribe('cloister:fast-connection', onFast);
  t.after(() => unsubscribe('cloister:fast-connection', onFast));
  const enclave = await startIngress(
    {
      ports: [
        {
          port: appPort,
          secureContext: opts.tls
            ? createSecureContext({ key: readFileSync(opts.tls.key), cert: readFileSync(opts.tls.cert) })
            : null,
        },
      ],
      proxyProtocol: opts.proxyProtocol ?? false,
      upstreamRetryMs: opts.upstreamRetryMs ?? 5000,
    },
    { transport, logger },
  );
  const host = await startHostIngress(
    {
      ports: [{ enclavePort: appPort, hostPort: 0 }],
      listenAddress: '127.0.0.1',
      proxyProtocol: opts.proxyProtocol ?? false,
    },
    { transport: new EmulatedTransport(dir, 2), enclaveCid: 16, logger },
  );
  t.after(async () => {
    await host.close();
    await enclave.close();
  });
  return { hostPort: host.addresses().get(appPort)!.port, dir, arrived: () => arrived };
}

function helloApp(t: TestContext, onReq?: (sock: Socket) => void) {
  const app = createHttpServer((req, res) => {
    onReq?.(req.socket);
    res.end(`hello from the app: ${req.method} ${req.url}\n`);
  });
  t.after(() => app.close());
  return app;
}

test('ingress: curl reaches the app through host listener and emulated vsock', async (t) => {
  const app = helloApp(t);
  const port = await listen(app);
  const { hostPort } = await chain(t, port);
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${hostPort}/path?q=1`]);
  assert.equal(stdout, 'hello from the app: GET /path?q=1\n');
});

test('ingress: TLS terminated inside the enclave; curl --cacert verifies it, host sees ciphertext', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-ingress-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  writeSelfSigned(key, cert);
  let appSawPlaintext = false;
  const app = helloApp(t, () => {
    appSawPlaintext = true;
  });
  const port = await listen(app);
  const { hostPort } = await chain(t, port, { tls: { key, cert } });
  // Several handshakes at once: one must not wait for another (odyn serialized them).
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) =>
      run('curl', ['-sS', '--max-time', '10', '--cacert', cert, `https://localhost:${hostPort}/tls${i}`]),
    ),
  );
  for (const [i, r] of results.entries()) assert.equal(r.stdout, `hello from the app: GET /tls${i}\n`);
  assert.ok(appSawPlaintext);
  // Without the CA, curl refuses: the certificate really is the enclave's.
  await assert.rejects(
    run('curl', ['-sS', '--max-time', '10', `https://localhost:${hostPort}/`]),
    /certificate/,
  );
  // A stalled client that never finishes its handshake does not block the next one.
  const stalled = connect(hostPort, '127.0.0.1');
  t.after(() => stalled.destroy());
  stalled.write(Buffer.from([0x16, 0x03, 0x01])); // a TLS record header and nothing more
  const r = await run('curl', [
    '-sS',
    '--max-time',
    '10',
    '--cacert',
    cert,
    `https://localhost:${hostPort}/after`,
  ]);
  assert.equal(r.stdout, 'hello from the app: GET /after\n');
  stalled.destroy();
});

test('ingress: 1 GiB upload with half-close; the app replies with its SHA-256', async (t) => {
  const app = createServer({ allowHalfOpen: true }, (s) => {
    const h = createHash('sha256');
    s.on('data', (c: Buffer) => h.update(c));
    s.on('end', () => s.end(h.digest('hex')));
  });
  t.after(() => app.close());
  const port = await listen(app);
  const { hostPort } = await chain(t, port);
  const block = randomBytes(1024 * 1024);
  const expected = createHash('sha256');
  const sock = connect({ port: hostPort, host: '127.0.0.1', allowHalfOpen: true });
  const reply: Buffer[] = [];
  sock.on('data', (d: Buffer) => reply.push(d));
  const closed = new Promise((r) => sock.on('close', r));
  for (let i = 0; i < 1024; i++) {
    expected.update(block);
    if (!sock.write(block)) await new Promise((r) => sock.once('drain', r));
  }
  sock.end();
  await closed;
  assert.equal(Buffer.concat(reply).toString(), expected.digest('hex'));
});

test('ingress: 500 concurrent connections each get their own echo', async (t) => {
  const app = createServer((s) => s.pipe(s));
  t.after(() => app.close());
  const port = await listen(app);
  const { hostPort } = await chain(t, port);
  const one = (i: number) =>
    new Promise<string>((res, rej) => {
      const s = connect(hostPort, '127.0.0.1');
      const msg = `connection ${i} ${randomBytes(8).toString('hex')}`;
      let got = '';
      s.setEncoding('utf8');
      s.on('error', rej);
      s.on('data', (d: string) => {
        got += d;
        if (got.length >= msg.length) {
          s.end();
          res(got === msg ? 'ok' : `mismatch on ${i}: ${got}`);
        }
      });
      s.write(msg);
    });
  const results = await Promise.all(Array.from({ length: 500 }, (_, i) => one(i)));
  assert.deepEqual(
    results.filter((r) => r !== 'ok'),
    [],
  );
});

test('ingress: a client arriving before the app listens is held until the app is up', async (t) => {
  const port = await freePort();
  const { hostPort, arrived } = await chain(t, port);
  const pending = run('curl', ['-sS', '--max-time', '15', `http://127.0.0.1:${hostPort}/early`]);
  // Proof the hold path runs: the client is on the enclave side while nothing listens on the app port,
  // so the enclave side's dial is refused and retried until the app below is up.
  for (let i = 0; arrived() === 0; i++) {
    assert.ok(i < 1000, 'the client never reached the enclave side');
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(arrived(), 1);
  const app = helloApp(t);
  await listen(app, port);
  const { stdout } = await pending;
  assert.equal(stdout, 'hello from the app: GET /early\n');
});

test('ingress: no app within upstream_retry_ms -> the client is dropped cleanly', async (t) => {
  const port = await freePort();
  const { hostPort } = await chain(t, port, { upstreamRetryMs: 300 });
  const r = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${hostPort}/`]).catch((e) => e);
  assert.ok(r instanceof Error, 'curl should fail');
  assert.match(String((r as { stderr?: string }).stderr), /Empty reply|reset|closed/i);
});

test('ingress: PROXY protocol v2 tells the app the real client address (plain port)', async (t) => {
  const headers: Buffer[] = [];
  const app = createServer((s) => {
    s.once('data', (d: Buffer) => {
      headers.push(d);
      s.end('ok');
    });
  });
  t.after(() => app.close());
  const port = await listen(app);
  const { hostPort } = await chain(t, port, { proxyProtocol: true });
  const s = connect(hostPort, '127.0.0.1');
  const local = await new Promise<number>((r) => s.on('connect', () => r(s.localPort!)));
  s.write('payload');
  s.resume();
  await new Promise((r) => s.on('close', r));
  const first = headers[0]!;
  const len = 16 + first.readUInt16BE(14);
  const info = decodeProxyV2(first.subarray(0, len));
  assert.equal(info.sourceAddress, '127.0.0.1');
  assert.equal(info.sourcePort, local);
  assert.equal(info.destPort, hostPort);
  // The app's bytes follow the header untouched (possibly in a later chunk).
  assert.ok(['payload', ''].includes(first.subarray(len).toString()));
});

test('ingress: PROXY v2 with TLS: header stripped before the handshake, handed to the app before plaintext', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-ingress-pp-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const key = join(dir, 'key.pem');
  const cert = join(dir, 'cert.pem');
  writeSelfSigned(key, cert);
  const seen: Buffer[] = [];
  const app = createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n', 28);
      if (end >= 0) {
        seen.push(buf);
        s.end('HTTP/1.1 200 OK\r\ncontent-length: 3\r\nconnection: close\r\n\r\nok\n');
      }
    });
  });
  t.after(() => app.close());
  const port = await listen(app);
  const { hostPort, dir: vsockDir } = await chain(t, port, { proxyProtocol: true, tls: { key, cert } });
  const { stdout } = await run('curl', [
    '-sS',
    '--max-time',
    '10',
    '--cacert',
    cert,
    `https://localhost:${hostPort}/pp`,
  ]);
  assert.equal(stdout, 'ok\n');
  const got = seen[0]!;
  const len = 16 + got.readUInt16BE(14);
  assert.equal(decodeProxyV2(got.subarray(0, len)).sourceAddress, '127.0.0.1');
  assert.match(got.subarray(len).toString(), /^GET \/pp HTTP\/1\.1\r\n/);

  // Header and ClientHello in the very same chunk (a host that writes them together) work too.
  const raw = await new EmulatedTransport(vsockDir, 2).connect(16, port);
  t.after(() => raw.destroy());
  const header = encodeProxyV2({ address: '10.1.2.3', port: 4567 }, { address: '10.0.0.1', port: 443 });
  let first = true;
  const glued = new Duplex({
    read() {
      raw.resume();
    },
    write(chunk: Buffer, _e, cb) {
      raw.write(first ? Buffer.concat([header, chunk]) : chunk, cb);
      first = false;
    },
  });
  raw.on('data', (c: Buffer) => glued.push(c));
  raw.on('end', () => glued.push(null));
  const tlsClient = tlsConnect({ socket: glued, ca: readFileSync(cert), servername: 'localhost' });
  tlsClient.end('GET /glued HTTP/1.1\r\nhost: x\r\n\r\n');
  const answer: Buffer[] = [];
  tlsClient.on('data', (d: Buffer) => answer.push(d));
  await new Promise((r) => tlsClient.on('end', r));
  assert.match(Buffer.concat(answer).toString(), /\r\n\r\nok\n$/);
  const last = seen.at(-1)!;
  assert.equal(decodeProxyV2(last.subarray(0, 16 + last.readUInt16BE(14))).sourceAddress, '10.1.2.3');
});

test('ingress: a connection without a valid PROXY header is refused when the enclave expects one', async (t) => {
  const app = createServer((s) => s.end('should not get here'));
  t.after(() => app.close());
  const port = await listen(app);
  const { dir } = await chain(t, port, { proxyProtocol: true });
  // Talk to the enclave side directly, as a hostile host would, with garbage instead of a header.
  const s = await new EmulatedTransport(dir, 2).connect(16, port);
  const got: Buffer[] = [];
  s.on('data', (d: Buffer) => got.push(d));
  s.write('GET / HTTP/1.1\r\n\r\n');
  // The transport socket is half-open capable: the enclave side's drop shows as EOF.
  await new Promise((r) => s.on('end', r));
  s.destroy();
  assert.equal(Buffer.concat(got).length, 0);
});

test('ingress: TLS files come from the manifest paths, else from odyn tls/server/<port>/', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-ingress-files-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const entry = { listen_port: 8443, tls: { key_file: 'certs/k.pem', cert_file: 'certs/c.pem' } };
  assert.throws(
    () => resolveTlsMaterial(dir, entry),
    /not found at .*certs\/k\.pem.*tls\/server\/8443\/key\.pem/,
  );
  mkdirSync(join(dir, 'tls/server/8443'), { recursive: true });
  writeSelfSigned(join(dir, 'tls/server/8443/key.pem'), join(dir, 'tls/server/8443/cert.pem'));
  assert.deepEqual(resolveTlsMaterial(dir, entry), {
    keyPath: join(dir, 'tls/server/8443/key.pem'),
    certPath: join(dir, 'tls/server/8443/cert.pem'),
  });
  mkdirSync(join(dir, 'certs'));
  writeSelfSigned(join(dir, 'certs/k.pem'), join(dir, 'certs/c.pem'));
  assert.deepEqual(resolveTlsMaterial(dir, entry), {
    keyPath: join(dir, 'certs/k.pem'),
    certPath: join(dir, 'certs/c.pem'),
  });
});

test('ingress: api.metrics_port is reachable over the transport, so the host can expose /metrics', async (t) => {
  const metricsPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'cloister-ingress-metrics-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const config: Config = {
    manifestPath: join(dir, 'enclaver.yaml'),
    configDir: dir,
    manifest: { version: 'v1', name: 'm', target: 'm:latest', sources: { app: 'a' } },
    settings: { ...DEFAULT_SETTINGS, api: { metrics_port: metricsPort } },
  };
  const plan = buildPlan(config);
  const metrics = await startMetricsServer(plan.metrics!, { logger });
  const ingress = await startIngress(plan.ingress, { transport: new EmulatedTransport(dir, 16), logger });
  const host = await startHostIngress(
    { ports: [{ enclavePort: metricsPort, hostPort: 0 }], listenAddress: '127.0.0.1' },
    { transport: new EmulatedTransport(dir, 2), enclaveCid: 16, logger },
  );
  t.after(async () => {
    await host.close();
    await ingress.close();
    await metrics.close();
  });
  const url = `http://127.0.0.1:${host.addresses().get(metricsPort)!.port}`;
  const m = await run('curl', ['-sS', '--max-time', '10', `${url}/metrics`]);
  assert.match(m.stdout, /^# HELP cloister_ingress_connections_total/m);
  const h = await run('curl', ['-sS', '--max-time', '10', `${url}/healthz`]);
  assert.match(h.stdout, /"status"/);
});

test('ingress: backpressure: an app that stops reading stops the client, nothing buffers without bound', async (t) => {
  let appSock: Socket | undefined;
  const app = createServer((s) => {
    appSock = s;
    s.pause(); // reads nothing until told
  });
  t.after(() => {
    appSock?.destroy();
    app.close();
  });
  const port = await listen(app);
  const { hostPort } = await chain(t, port);
  const sock = connect(hostPort, '127.0.0.1');
  t.after(() => sock.destroy());
  await new Promise((r) => sock.once('connect', r));
  const chunk = Buffer.alloc(256 * 1024, 1);
  let accepted = 0;
  // Write while the chain accepts; stop when no 'drain' came for 500 ms (everything on the way is full).
  for (;;) {
    if (sock.write(chunk)) {
      accepted += chunk.length;
      continue;
    }
    accepted += chunk.length;
    const drained = await Promise.race([
      new Promise((r) => sock.once('drain', () => r(true))),
      new Promise((r) => setTimeout(() => r(false), 500)),
    ]);
    if (!drained) break;
    assert.ok(accepted < 256 * 1024 * 1024, 'the chain kept accepting data the app never read');
  }
  // Kernel buffers of three sockets plus a few stream buffers: megabytes, not the whole stream.
  assert.ok(accepted < 64 * 1024 * 1024, `accepted ${accepted} bytes with the app not reading`);
  // And the bytes all arrive once the app reads again.
  let received = 0;
  appSock!.on('data', (d: Buffer) => {
    received += d.length;
  });
  appSock!.resume();
  sock.end();
  await new Promise((r) => appSock!.once('end', r));
  assert.equal(received, accepted);
});

test('ingress: close() stops accepting, lets an in-flight connection finish, then cuts stragglers', async (t) => {
  const app = createServer((s) => s.pipe(s));
  t.after(() => app.close());
  const port = await listen(app);
  const dir = mkdtempSync(join(tmpdir(), 'cloister-ingress-close-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const enclave = await startIngress(
    {
      ports: [{ port, secureContext: null }],
      proxyProtocol: false,
      upstreamRetryMs: 1000,
      closeGraceMs: 1500,
    },
    { transport: new EmulatedTransport(dir, 16), logger },
  );
  const vsock = new EmulatedTransport(dir, 2);
  const inflight = await vsock.connect(16, port);
  inflight.setEncoding('utf8');
  let echoed = '';
  inflight.on('data', (d: string) => {
    echoed += d;
  });
  inflight.write('before close;');
  while (!echoed.includes('before close;')) await new Promise((r) => setTimeout(r, 10));
  const closing = enclave.close();
  // New connections are refused at once...
  await assert.rejects(vsock.connect(16, port));
  // ...while the open one still works until the grace period ends, then is cut off.
  inflight.write('during close;');
  const ended = new Promise((r) => inflight.once('end', r));
  await closing;
  await ended;
  assert.equal(echoed, 'before close;during close;');
});
