// Node's internals live in src/transport/node-internals.ts only: its start-up self-check passes on the
// running Node, each accessor does what its callers rely on against real sockets, and the lint step
// (scripts/check-node-internals.mjs) finds an internal used anywhere else.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
// @ts-expect-error: a plain .mjs script without types
import { findInternals } from '../../../scripts/check-node-internals.mjs';
import { loadNative } from '../../../src/native.ts';
import {
  checkNodeInternals,
  eofRead,
  raiseWriteHighWaterMark,
  spliceableHandleFd,
  stopReadingForever,
} from '../../../src/transport/node-internals.ts';

test('the self-check passes on this Node, with the addon and a vsock listener', async () => {
  await checkNodeInternals({ addon: loadNative(), vsock: true });
});

async function tcpPair(): Promise<[Socket, Socket, () => void]> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  const client = netConnect(port, '127.0.0.1');
  await once(client, 'connect');
  const [peer] = await accepted;
  return [client, peer, () => server.close()];
}

test('stopReadingForever leaves the bytes in the kernel; eofRead and the fd follow the socket', async () => {
  const [client, peer, close] = await tcpPair();
  try {
    assert.equal(typeof spliceableHandleFd(peer), 'number');
    assert.equal(eofRead(peer), false);
    raiseWriteHighWaterMark(peer, 300_000);
    assert.equal(peer.writableHighWaterMark, 300_000);
    raiseWriteHighWaterMark(peer, 1); // never lowers
    assert.equal(peer.writableHighWaterMark, 300_000);
    stopReadingForever(peer);
    let got = 0;
    peer.on('data', (d: Buffer) => (got += d.length));
    peer.resume();
    client.write('not for node');
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got, 0);
    assert.equal(peer.bytesRead, 0);
  } finally {
    client.destroy();
    peer.destroy();
    close();
  }
});

test('eofRead is true once the peer EOF was read', async () => {
  const [client, peer, close] = await tcpPair();
  try {
    peer.pause();
    client.end();
    await once(peer, 'readable');
    assert.equal(eofRead(peer), true);
  } finally {
    client.destroy();
    peer.destroy();
    close();
  }
});

test('the lint step finds Node internals outside their module, and ignores comments', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-internals-'));
  try {
    mkdirSync(join(dir, 'sub'));
    writeFileSync(
      join(dir, 'sub', 'bad.ts'),
      [
        '// socket._handle in a comment is fine',
        '/* so is process.binding("x") here */',
        'const fd = (s as any)._handle.fd;',
        'const ws = s._writableState; // and a trailing comment',
        "const b = process.binding('pipe_wrap');",
      ].join('\n'),
    );
    const found = (findInternals(dir) as string[]).map((f) => f.replace(/^.*sub\//, ''));
    assert.deepEqual(found, [
      'bad.ts:3: the libuv handle (._handle)',
      'bad.ts:4: stream state (._readableState/._writableState)',
      'bad.ts:5: process.binding()',
      "bad.ts:5: an internal binding ('pipe_wrap'...)",
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('src/ has no Node internals outside src/transport/node-internals.ts', () => {
  assert.deepEqual(findInternals(), []);
});

test('a Node without what the self-check needs makes it fail naming the internal and the Node version', () => {
  // A stand-in for a Node that dropped process.binding('pipe_wrap'), in a fresh process (the check runs once).
  const script = `process.binding = () => { throw new Error('No such module: pipe_wrap'); };
const { checkNodeInternals } = await import('./src/transport/node-internals.ts');
await checkNodeInternals({ addon: null, vsock: false }).then(() => console.log('passed'), (e) => console.log(e.name + ': ' + e.message));`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(
    r.stdout,
    /^NodeInternalsError: Node v\d+\.\d+\.\d+ does not behave as cloister assumes: process\.binding\('pipe_wrap'\) is gone \(No such module: pipe_wrap\)/,
  );
});
