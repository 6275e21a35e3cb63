// The egress proxy against peers that do not play by the rules: origins (and a host relay that says
// "Ok" and then sends whatever it likes) answering with impossible status lines, apps sending bodies
// on methods Node frames without one, a malformed request pipelined behind a streaming response,
// bursts of CONNECTs against egress.max_tunnels, and a 5xx whose URL carries a secret in its query.
// Every peer is scripted byte by byte over real sockets (loopback and emulated vsock).
import assert from 'node:assert/strict';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { encodeResponse, readFrame } from '../../../src/egress/protocol.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { EGRESS_VSOCK_PORT } from '../../../src/transport/types.ts';
import { deadPort, listen, rawExchange, startPath, startTcp } from '../../helpers/egress-fixture.ts';

/** Writes `bytes` one at a time, so every parser boundary is exercised. */
async function dribble(sock: Socket, bytes: string): Promise<void> {
  for (const b of Buffer.from(bytes, 'latin1')) {
    if (sock.destroyed) return;
    sock.write(Buffer.of(b));
    await sleep(0);
  }
}

/** Origins that read a request head and answer with `reply`, byte by byte. */
async function scriptedOrigin(t: Parameters<typeof startTcp>[0], reply: string): Promise<number> {
  return startTcp(t, (s) => {
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (head.includes('\r\n\r\n')) void dribble(s, reply);
    });
  });
}

const HOSTILE_REPLIES: [string, string, RegExp][] = [
  ['status below 100', 'HTTP/1.1 099 Too Low\r\nContent-Length: 2\r\n\r\nhi', /status 99/],
  ['status 000', 'HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n', /status 0/],
  ['control character in the reason', 'HTTP/1.1 200 O\x01K\r\nContent-Length: 2\r\n\r\nhi', /reason/],
  [
    '101 to a plain request',
    'HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: upgrade\r\n\r\nraw',
    /101/,
  ],
  ['101 without an Upgrade header', 'HTTP/1.1 101 Switching\r\n\r\nraw', /101/],
];

test('an origin with an impossible status line gets the app a 502 at once, not an uncaught exception', async (t) => {
  for (const [name, reply, why] of HOSTILE_REPLIES) {
    const port = await scriptedOrigin(t, reply);
    const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] });
    const started = Date.now();
    const r = await rawExchange(
      proxyPort,
      `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: x\r\n\r\n`,
      /\r\n\r\n[^\n]*\n/,
      5000,
    );
    assert.match(r, /^HTTP\/1\.1 502 /, `${name}: ${JSON.stringify(r)}`);
    assert.match(r, why, `${name}: ${JSON.stringify(r)}`);
    assert.ok(Date.now() - started < 3000, `${name}: answered after ${Date.now() - started} ms`);
  }
});

test('a host relay that answers "Ok" and then sends an impossible status line: 502 at once', async (t) => {
  for (const [name, reply, why] of HOSTILE_REPLIES) {
    const { proxyPort, vsockDir } = await startPath(t, { allow: ['origin.test'] }, { noRelay: true });
    const relay = await new EmulatedTransport(vsockDir, 2).listen(EGRESS_VSOCK_PORT);
    const streams = new Set<Socket>();
    relay.on('connection', async (s: Socket) => {
      streams.add(s);
      s.on('error', () => {});
      await readFrame(s, 5000);
      s.resume();
      s.write(encodeResponse({ ok: true }));
      // Wait for the request head the proxy forwards, then answer as a hostile origin would.
      let head = '';
      s.on('data', (d: Buffer) => {
        head += d.toString('latin1');
        if (head.includes('\r\n\r\n')) void dribble(s, reply);
      });
    });
    t.after(() => {
      for (const s of streams) s.destroy();
      relay.close();
    });
    const r = await rawExchange(
      proxyPort,
      'GET http://origin.test/ HTTP/1.1\r\nHost: x\r\n\r\n',
      /\r\n\r\n[^\n]*\n/,
      5000,
    );
    assert.match(r, /^HTTP\/1\.1 502 /, `${name}: ${JSON.stringify(r)}`);
    assert.match(r, why, `${name}: ${JSON.stringify(r)}`);
  }
});

test('GET, HEAD, DELETE and OPTIONS with a chunked body are re-framed: the origin sees one request', async (t) => {
  const seen: { method: string; url: string; te?: string; body: string }[] = [];
  const origin = createHttpServer((req: IncomingMessage, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method!,
        url: req.url!,
        te: req.headers['transfer-encoding'],
        body: Buffer.concat(chunks).toString(),
      });
      res.end('ok');
    });
  });
  const port = await listen(origin);
  t.after(() => {
    origin.closeAllConnections();
    origin.close();
  });
  const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] });
  // The body is itself a request: sent raw after the head, the origin would run it as a second one.
  const smuggled = 'GET /smuggled HTTP/1.1\r\nHost: internal.example\r\n\r\n';
  const chunked = `${smuggled.length.toString(16)}\r\n${smuggled}\r\n0\r\n\r\n`;
  for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) {
    seen.length = 0;
    const r = await rawExchange(
      proxyPort,
      `${method} http://127.0.0.1:${port}/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n${chunked}`,
    );
    assert.match(r, /^HTTP\/1\.1 200 /, `${method}: ${r}`);
    await sleep(100); // a smuggled second request would arrive right behind the first
    assert.deepEqual(seen, [{ method, url: '/x', te: 'chunked', body: smuggled }], method);
  }
  // A transfer coding the proxy cannot pass on as it came is refused, not forwarded unframed.
  const gz = await rawExchange(
    proxyPort,
    `POST http://127.0.0.1:${port}/x HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n`,
  );
  assert.match(gz, /^HTTP\/1\.1 501 [\s\S]*Transfer-Encoding/);
});

test('a malformed request pipelined behind a streaming response closes the connection, no raw 400 inside the body', async (t) => {
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  const port = await startTcp(t, (s) => {
    s.once('data', async () => {
      s.write('HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nfirst');
      await released;
      if (!s.destroyed) s.end('-last');
    });
  });
  const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] });
  const got = await new Promise<string>((resolve) => {
    const c = netConnect({ port: proxyPort, host: '127.0.0.1' });
    let out = '';
    c.on('error', () => {});
    c.on('data', (d: Buffer) => {
      out += d.toString('latin1');
      // The response is streaming: now a request the parser cannot read arrives on the same connection.
      if (out.endsWith('first')) {
        c.write('BAD\x00 REQUEST\r\n\r\n');
        setTimeout(release, 200);
      }
    });
    c.on('close', () => resolve(out));
    c.write(`GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: x\r\n\r\n`);
  });
  assert.equal(got.match(/HTTP\/1\.1 /g)?.length, 1, JSON.stringify(got));
  assert.doesNotMatch(got, /400/);
  assert.match(got, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nfirst/);
});

test('egress.max_tunnels is reserved before dialling: 30 simultaneous CONNECTs with a limit of 3 open 3', async (t) => {
  let open = 0;
  let most = 0;
  const port = await startTcp(t, (s) => {
    open++;
    most = Math.max(most, open);
    s.on('close', () => open--);
  });
  // All 30 are read in one turn of the event loop, so all are being dialled before the first is counted.
  const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] }, { settings: { max_tunnels: 3 } });
  const answers = await Promise.all(
    Array.from({ length: 30 }, () =>
      rawExchange(proxyPort, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`, /\r\n\r\n/, 5000),
    ),
  );
  const statuses = answers.map((a) => a.slice(9, 12)).sort();
  assert.equal(statuses.filter((s) => s === '200').length, 3, statuses.join(' '));
  assert.equal(statuses.filter((s) => s === '503').length, 27, statuses.join(' '));
  await sleep(100);
  assert.ok(most <= 3, `the origin saw ${most} tunnels at once`);
});

test('an egress 5xx is logged with host, port and path but never the query string', async (t) => {
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(s) } });
  const closed = await deadPort();
  const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] }, { logger });
  const secret = 'tok3n-s3cr3t-value';
  const r = await rawExchange(
    proxyPort,
    `GET http://127.0.0.1:${closed}/oauth/cb?access_token=${secret}&x=1 HTTP/1.1\r\nHost: x\r\n\r\n`,
  );
  assert.match(r, /^HTTP\/1\.1 502 /);
  const warn = lines.map((l) => JSON.parse(l)).find((l) => l.level === 40);
  assert.ok(warn, `no warn line in ${lines.join('')}`);
  assert.equal(warn.host, '127.0.0.1');
  assert.equal(warn.port, closed);
  assert.equal(warn.path, '/oauth/cb');
  assert.equal(warn.status, 502);
  assert.doesNotMatch(lines.join(''), new RegExp(secret));
});
