// The egress proxy's and relay's per-connection fast path (src/transport/fast.ts): a CONNECT whose head
// is complete in its first bytes never becomes a net.Socket in either, and every answer is the one the
// Node path (CLOISTER_CONNECTION_PATH=node, the path every other request takes) gives, byte for byte.
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { connect as netConnect } from 'node:net';
import { type TestContext, test } from 'node:test';
import {
  connectTunnel,
  deadPort,
  type Path,
  rawExchange,
  startPath,
  startTcp,
} from '../../helpers/egress-fixture.ts';

/** startPath with the connection path chosen by CLOISTER_CONNECTION_PATH while the services start. */
async function startWith(
  t: TestContext,
  path: 'native' | 'node',
  ...args: Parameters<typeof startPath> extends [unknown, ...infer R] ? R : never
) {
  const before = process.env.CLOISTER_CONNECTION_PATH;
  process.env.CLOISTER_CONNECTION_PATH = path;
  try {
    return await startPath(t, ...args);
  } finally {
    if (before === undefined) delete process.env.CLOISTER_CONNECTION_PATH;
    else process.env.CLOISTER_CONNECTION_PATH = before;
  }
}

/** Counts the net.Sockets Node's servers make in this process while `fn` runs. */
async function countServerSockets(fn: () => Promise<void>): Promise<number> {
  let n = 0;
  const onSocket = () => {
    n++;
  };
  subscribe('net.server.socket', onSocket);
  try {
    await fn();
  } finally {
    unsubscribe('net.server.socket', onSocket);
  }
  return n;
}

async function echoOnce(proxyPort: number, echo: number): Promise<string> {
  const s = await connectTunnel(proxyPort, `127.0.0.1:${echo}`);
  const got = new Promise<string>((r) => s.once('data', (d) => r(String(d))));
  s.resume();
  s.write('ping');
  const answer = await got;
  s.destroy();
  return answer;
}

test('a CONNECT served on the fast path makes no net.Socket in the proxy or the relay', async (t) => {
  const echo = await startTcp(t, (s) => s.pipe(s));
  const fast = await startWith(t, 'native', { allow: ['127.0.0.1'] });
  const node = await startWith(t, 'node', { allow: ['127.0.0.1'] });
  // The echo server's own socket is the one Node makes per tunnel on the fast path.
  assert.equal(
    await countServerSockets(async () => assert.equal(await echoOnce(fast.proxyPort, echo), 'ping')),
    1,
  );
  assert.equal(
    await countServerSockets(async () => assert.equal(await echoOnce(node.proxyPort, echo), 'ping')),
    3,
  );
});

test("a CONNECT head split over two writes goes to Node's HTTP server and still tunnels", async (t) => {
  const echo = await startTcp(t, (s) => s.pipe(s));
  const { proxyPort } = await startWith(t, 'native', { allow: ['127.0.0.1'] });
  const sockets = await countServerSockets(async () => {
    const s = netConnect({ port: proxyPort, host: '127.0.0.1' });
    s.on('error', () => {});
    let got = '';
    const done = new Promise<void>((resolve) =>
      s.on('data', (d) => {
        got += d.toString('latin1');
        if (got.endsWith('\r\n\r\nping')) resolve();
      }),
    );
    // The second half is sent only once the proxy has handed the connection to Node's server (its
    // net.Socket appears), so the proxy saw a partial head whatever the machine's load.
    const handedToNode = new Promise<void>((resolve) => {
      const onSocket = () => {
        unsubscribe('net.server.socket', onSocket);
        resolve();
      };
      subscribe('net.server.socket', onSocket);
    });
    s.write(`CONNECT 127.0.0.1:${echo} HTTP/1.1\r\n`);
    await handedToNode;
    s.write('Host: x\r\n\r\nping');
    await done;
    s.destroy();
    assert.match(got, /^HTTP\/1\.1 200 Connection established\r\n\r\nping$/);
  });
  assert.equal(sockets, 2, "the proxy's Node socket and the echo server's; the relay stays on the fast path");
});

test('refusals are byte-identical on the fast path and the Node path (403, 400, 502, 504, 408, 431)', async (t) => {
  const closed = await deadPort();
  const paths: Path[] = [];
  for (const path of ['native', 'node'] as const)
    paths.push(
      await startWith(
        t,
        path,
        { allow: ['127.0.0.1', 'slow.test'], deny: ['evil.test'] },
        {
          settings: { header_timeout_ms: 300, max_header_bytes: 2048 },
          relay: { connectTimeoutMs: 300, lookup: () => new Promise(() => {}) },
        },
      ),
    );
  const cases = [
    'CONNECT example.org:443 HTTP/1.1\r\n\r\n',
    'CONNECT EVIL.test.:443 HTTP/1.1\r\nHost: evil.test\r\n\r\n',
    'CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n',
    'CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n',
    'CONNECT user:pw@127.0.0.1:443 HTTP/1.1\r\n\r\n',
    'CONNECT a..b:443 HTTP/1.1\r\n\r\n',
    'CONNECT [::1:443 HTTP/1.1\r\n\r\n',
    `CONNECT 127.0.0.1:${closed} HTTP/1.1\r\n\r\n`,
    'CONNECT slow.test:443 HTTP/1.1\r\n\r\n',
    '', // nothing at all: 408 after header_timeout_ms
    `CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`,
  ];
  for (const req of cases) {
    const [fast, node] = await Promise.all(paths.map((p) => rawExchange(p.proxyPort, req)));
    assert.match(fast!, /^HTTP\/1\.1 [45]\d\d /, JSON.stringify(req));
    assert.equal(fast, node, JSON.stringify(req));
  }
});
