// The tunnel's kernel data path (native spliceJoin behind joinSockets) against real sockets: one side
// TCP on loopback, the other a Unix socket (as the egress path: TCP to the app, emulated vsock to the
// host). Each test checks bytes end to end, the close semantics, and which engine carried the tunnel.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadNative, nativeCandidates } from '../../../src/native.ts';
import { joinSockets, type TunnelOptions } from '../../../src/transport/tunnel.ts';

type CloseInfo = Parameters<NonNullable<TunnelOptions['onClose']>>[0];

const dir = mkdtempSync(join(tmpdir(), 'cloister-splice-'));
let seq = 0;

function listen(server: Server, where: string | number): Promise<void> {
  return new Promise((resolve) =>
    typeof where === 'string' ? server.listen(where, resolve) : server.listen(where, '127.0.0.1', resolve),
  );
}

/**
 * client (TCP) -> [a | tunnel | b] -> server (Unix). Returns the outer ends: `client` (talks to a) and
 * `server` (the accepted end of b), plus a promise of the tunnel's onClose info.
 */
async function tunnel(
  opts: Omit<TunnelOptions, 'onClose'> = {},
  beforeJoin?: (a: Socket, client: Socket) => Promise<void> | void,
): Promise<{ client: Socket; server: Socket; closed: Promise<CloseInfo>; a: Socket; b: Socket }> {
  const path = join(dir, `${seq++}.sock`);
  const front = createServer({ allowHalfOpen: true });
  const back = createServer({ allowHalfOpen: true });
  await listen(front, 0);
  await listen(back, path);
  const aP = new Promise<Socket>((r) => front.once('connection', r));
  const serverP = new Promise<Socket>((r) => back.once('connection', r));
  const client = connect({
    port: (front.address() as { port: number }).port,
    host: '127.0.0.1',
    allowHalfOpen: true,
  });
  const a = await aP;
  const b = connect({ path, allowHalfOpen: true });
  await new Promise((r) => b.once('connect', r));
  const server = await serverP;
  front.close();
  back.close();
  await beforeJoin?.(a, client);
  const closed = new Promise<CloseInfo>((resolve) => joinSockets(a, b, { ...opts, onClose: resolve }));
  return { client, server, closed, a, b };
}

function sha(buf: Buffer): string {
  return createHash('sha256').update(buf).digest('hex');
}

/** Sends `size` random bytes in chunks (then FIN) and resolves with their SHA-256. */
function sendRandom(s: Socket, size: number): Promise<string> {
  const h = createHash('sha256');
  let left = size;
  return new Promise((resolve, reject) => {
    s.once('error', reject);
    const pump = () => {
      while (left > 0) {
        const chunk = randomBytes(Math.min(left, 256 * 1024));
        left -= chunk.length;
        h.update(chunk);
        if (!s.write(chunk)) return void s.once('drain', pump);
      }
      s.end(() => resolve(h.digest('hex')));
    };
    pump();
  });
}

/** Reads to EOF; resolves with byte count and SHA-256. */
function receiveAll(s: Socket): Promise<{ bytes: number; sha: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  return new Promise((resolve, reject) => {
    s.on('data', (d: Buffer) => {
      bytes += d.length;
      h.update(d);
    });
    s.once('end', () => resolve({ bytes, sha: h.digest('hex') }));
    s.once('error', reject);
  });
}

const closedP = (s: Socket) => new Promise<void>((r) => (s.destroyed ? r() : s.once('close', () => r())));
/** The peer is gone: EOF, reset or close (allowHalfOpen sockets stay open after EOF). */
const goneP = (s: Socket) =>
  new Promise<void>((r) => {
    if (s.destroyed || s.readableEnded) return r();
    s.once('end', () => r())
      .once('close', () => r())
      .once('error', () => r())
      .resume();
  });

test.after(() => rmSync(dir, { recursive: true, force: true }));

test('the native addon offers spliceJoin and checks its arguments', () => {
  const n = loadNative();
  assert.equal(typeof n.spliceJoin, 'function');
  assert.throws(() => n.spliceJoin!(-1, 5, 0, () => {}), { code: 'EBADF' });
  assert.throws(() => n.spliceJoin!(7, 7, 0, () => {}), { code: 'EBADF' });
  assert.throws(() => n.spliceJoin!(0.5, 1, 0, () => {}), { code: 'ERR_OUT_OF_RANGE' });
  assert.throws(() => n.spliceJoin!(1, 2, 0, 'x' as never), { code: 'ERR_INVALID_ARG_TYPE' });
  assert.throws(() => n.spliceCancel!({} as never), { code: 'ERR_INVALID_ARG_TYPE' });
});

test('splice: 48 MiB each way at once arrive intact (SHA-256) and are counted', async () => {
  const { client, server, closed } = await tunnel();
  const size = 48 * 1024 * 1024;
  const [upSent, downSent, upGot, downGot] = await Promise.all([
    sendRandom(client, size),
    sendRandom(server, size),
    receiveAll(server),
    receiveAll(client),
  ]);
  assert.deepEqual(upGot, { bytes: size, sha: upSent });
  assert.deepEqual(downGot, { bytes: size, sha: downSent });
  const info = await closed;
  assert.equal(info.engine, 'splice');
  assert.equal(info.error, null);
  assert.equal(info.aRead, size);
  assert.equal(info.aWritten, size);
  client.destroy();
  server.destroy();
});

test('splice: a pre-read prefix and later bytes keep their order', async () => {
  const { client, server, closed } = await tunnel({}, async (a, client) => {
    client.write('first|');
    await new Promise<void>((r) => a.once('readable', () => r()));
    a.pause();
  });
  const got = receiveAll(server);
  client.end('second|third');
  const text = await got;
  assert.equal(text.sha, sha(Buffer.from('first|second|third')));
  server.end();
  assert.equal((await closed).engine, 'splice');
  client.destroy();
});

test('splice: half-close carried both ways (client FIN first, then server FIN)', async () => {
  const { client, server, closed } = await tunnel();
  const serverGot = receiveAll(server);
  client.end('request');
  assert.equal((await serverGot).sha, sha(Buffer.from('request')));
  // The other direction still flows after the client's FIN.
  const clientGot = receiveAll(client);
  server.write('response part 1, ');
  await new Promise((r) => setTimeout(r, 50));
  server.end('part 2');
  assert.equal((await clientGot).sha, sha(Buffer.from('response part 1, part 2')));
  const info = await closed;
  assert.equal(info.error, null);
  assert.equal(info.engine, 'splice');
  await Promise.all([closedP(client.destroy()), closedP(server.destroy())]);
});

test('splice: half-close carried both ways (server FIN first, then client FIN)', async () => {
  const { client, server, closed } = await tunnel();
  const clientGot = receiveAll(client);
  server.end('banner');
  assert.equal((await clientGot).sha, sha(Buffer.from('banner')));
  const serverGot = receiveAll(server);
  client.end('late request');
  assert.equal((await serverGot).sha, sha(Buffer.from('late request')));
  assert.equal((await closed).error, null);
  client.destroy();
  server.destroy();
});

test('splice: a reset on one side tears down the other', async () => {
  const { client, server, closed } = await tunnel();
  // Some traffic first so the pump is running.
  const echoed = new Promise((r) => client.once('data', r));
  server.on('data', (d) => server.write(d));
  client.write('ping');
  await echoed;
  server.on('error', () => {});
  client.resetAndDestroy();
  await goneP(server);
  const info = await closed;
  assert.equal(info.engine, 'splice');
  assert.ok(info.error, 'the reset is reported');
  server.destroy();
});

test('splice: the idle timeout closes both sides', async () => {
  const { client, server, closed } = await tunnel({ idleTimeoutMs: 300 });
  client.on('error', () => {});
  server.on('error', () => {});
  client.write('x'); // traffic, then silence
  await Promise.all([goneP(client), goneP(server)]);
  const info = await closed;
  assert.match(String(info.error?.message), /idle for 300 ms/);
  assert.equal(info.aRead, 1);
  client.destroy();
  server.destroy();
});

test('splice: 500 tunnels at once each echo their own bytes; no fd is left behind', async () => {
  const fds = () => readdirSync('/proc/self/fd').length;
  // Finished pumps keep a bounded pool of empty pipe pairs for the next tunnels: those are not leaks.
  const idle = () => loadNative().spliceIdlePipes!();
  const before = fds();
  const idleBefore = idle();
  const N = 500;
  const all = [];
  for (let i = 0; i < N; i += 50)
    all.push(...(await Promise.all(Array.from({ length: Math.min(50, N - i) }, () => tunnel()))));
  const results = await Promise.all(
    all.map(async ({ client, server, closed }) => {
      server.on('data', (d) => server.write(d));
      server.on('end', () => server.end());
      const payload = randomBytes(4096 + Math.floor(Math.random() * 4096));
      const got = receiveAll(client);
      client.end(payload);
      const r = await got;
      const info = await closed;
      client.destroy();
      server.destroy();
      return r.sha === sha(payload) && info.engine === 'splice' && info.error === null;
    }),
  );
  assert.equal(results.filter(Boolean).length, N);
  await new Promise((r) => setTimeout(r, 200));
  const pooled = idle() - idleBefore;
  assert.ok(idle() <= 32, `pool holds ${idle()} pairs`);
  assert.ok(
    fds() <= before + 2 + 2 * pooled,
    `fds before ${before}, after ${fds()}, ${pooled} pairs newly pooled`,
  );
});

test('fallback: a side that already ended, or engine "stream", uses Node streams with the same results', async () => {
  // The client's data and FIN already seen by Node before the join: splice cannot carry that EOF,
  // streams do (the JS buffer is flushed, then the FIN).
  const t1 = await tunnel({}, async (a, c) => {
    c.end('all at once');
    await new Promise<void>((r) => {
      a.once('readable', function check() {
        if ((a as unknown as { _readableState: { ended: boolean } })._readableState.ended) r();
        else a.once('readable', check);
      });
    });
  });
  const got = await receiveAll(t1.server);
  assert.equal(got.sha, sha(Buffer.from('all at once')));
  t1.server.end();
  assert.equal((await t1.closed).engine, 'stream');
  t1.client.destroy();

  const { client, server, closed } = await tunnel({ engine: 'stream' });
  const size = 8 * 1024 * 1024;
  const [upSent, upGot] = await Promise.all([sendRandom(client, size), receiveAll(server)]);
  assert.deepEqual(upGot, { bytes: size, sha: upSent });
  server.end();
  const info = await closed;
  assert.equal(info.engine, 'stream');
  assert.equal(info.aRead, size);
  client.destroy();
});

test('splice: worker threads that exit with pumps still running (and pooled pipes) leave the process healthy', (t) => {
  // Each worker has its own loop, epoll poller and pipe pool; its exit tears them down through the addon's
  // environment cleanup hooks, which must not call back into a possibly unloaded addon.
  const addon = nativeCandidates().find((p) => existsSync(p))!;
  const dir = mkdtempSync(join(tmpdir(), 'cloister-splice-worker-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'worker.mjs'),
    `import { createRequire } from 'node:module';
import net from 'node:net';
import { parentPort } from 'node:worker_threads';
const n = createRequire(import.meta.url)(${JSON.stringify(addon)});
const srv = net.createServer({ allowHalfOpen: true, pauseOnConnect: true });
const acc = [];
srv.on('connection', (s) => acc.push(s));
await new Promise((r) => srv.listen(0, '127.0.0.1', r));
const mk = async () => {
  const c = net.connect({ port: srv.address().port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((r) => c.once('connect', r));
  while (acc.length === 0) await new Promise((r) => setTimeout(r, 5));
  return [c, acc.shift()];
};
let done = 0;
for (let i = 0; i < 4; i++) {
  const [c1, s1] = await mk();
  const [c2, s2] = await mk();
  c2.pause();
  c2._handle.readStop();
  n.spliceJoin(s1._handle.fd, c2._handle.fd, 0, (err) => { if (!err) done++; });
  c1.write('hi');
  const got = new Promise((r) => s2.once('data', r));
  s2.resume();
  await got;
  if (i < 2) {
    c1.end();
    s2.end();
    while (done <= i) await new Promise((r) => setTimeout(r, 5));
  }
}
parentPort.postMessage({ done, pooled: n.spliceIdlePipes() });
process.exit(0); // with two pumps, the listener and their sockets still open
`,
  );
  writeFileSync(
    join(dir, 'main.mjs'),
    `import { Worker } from 'node:worker_threads';
for (let round = 0; round < 3; round++) {
  const w = new Worker(${JSON.stringify(join(dir, 'worker.mjs'))});
  const got = [];
  w.on('message', (m) => got.push(m));
  const code = await new Promise((r) => w.on('exit', r));
  console.log(JSON.stringify({ code, got }));
}
console.log('main alive');
`,
  );
  const r = spawnSync(process.execPath, [join(dir, 'main.mjs')], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `exit ${r.status} ${r.signal ?? ''}: ${r.stderr}`);
  const lines = r.stdout.trim().split('\n');
  assert.equal(lines.at(-1), 'main alive');
  for (const line of lines.slice(0, 3)) {
    const { code, got } = JSON.parse(line);
    assert.equal(code, 0);
    // Two tunnels ended cleanly, two were still running when the worker exited.
    assert.equal(got[0].done, 2);
  }
});
