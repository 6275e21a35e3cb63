// The addon's per-connection waits (native/src/fdwait.c) and the pump's greetings (splice.c), which the
// fast path (src/transport/fast.ts) builds on, against real sockets: what a peek leaves in the kernel,
// a frame read to the byte, connect errors as errno codes, and a greeting that does not fit the socket.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadNative } from '../../../src/native.ts';
import { takeConnections } from '../../../src/transport/fast.ts';
import { joinFds } from '../../../src/transport/tunnel.ts';

const native = loadNative();
const dir = mkdtempSync(join(tmpdir(), 'cloister-fast-'));
test.after(() => rmSync(dir, { recursive: true, force: true }));

/** A Unix server whose accepted connections stay raw fds (takeConnections), and a Node client to it. */
async function rawPair(
  name: string,
): Promise<{ fd: number; client: Socket; close: () => void; server: Server }> {
  const path = join(dir, `${name}.sock`);
  const server = createServer({ allowHalfOpen: true });
  await new Promise<void>((r) => server.listen(path, r));
  const accepted = new Promise<{ fd: number; close: () => void }>((resolve) =>
    takeConnections(server, (h) => {
      resolve({ fd: h.fd, close: () => h.close() });
      return true;
    }),
  );
  const { connect } = await import('node:net');
  const client = connect({ path, allowHalfOpen: true });
  client.on('error', () => {});
  const { fd, close } = await accepted;
  return { fd, client, close, server };
}

test('peekHead leaves the bytes in the kernel; recvDiscard drops exactly the head', async () => {
  const { fd, client, close, server } = await rawPair('peek');
  try {
    const first = native.peekHead(fd, 64, 2000); // waits: nothing sent yet
    client.write('HEAD\r\n\r\nrest');
    assert.equal(String(await first), 'HEAD\r\n\r\nrest');
    assert.equal(String(await native.peekHead(fd, 4, 2000)), 'HEAD', 'at most maxBytes, same bytes again');
    native.recvDiscard(fd, 8);
    assert.equal(String(await native.peekHead(fd, 64, 2000)), 'rest');
    assert.throws(() => native.recvDiscard(fd, 5), { code: 'EAGAIN' });
    client.end();
    assert.equal((await native.peekHead(fd, 64, 2000)).length, 0, 'EOF: empty');
  } finally {
    close();
    server.close();
  }
});

test('peekHead times out with ETIMEDOUT, and shutdownFd wakes it with EOF', async () => {
  const { fd, close, server } = await rawPair('peek-timeout');
  try {
    await assert.rejects(native.peekHead(fd, 64, 50), { code: 'ETIMEDOUT' });
    const waiting = native.peekHead(fd, 64, 5000);
    native.shutdownFd(fd);
    assert.equal((await waiting).length, 0);
  } finally {
    close();
    server.close();
  }
});

test('readFrame reads one frame to the byte, whatever the pieces; EOF mid-frame is ECONNRESET', async () => {
  const { fd, client, close, server } = await rawPair('frame');
  try {
    const frame = native.readFrame(fd, 2000);
    // Split inside the length prefix and inside the body, then bytes that belong to the tunnel.
    client.write(Buffer.from([5]));
    await new Promise((r) => setTimeout(r, 20));
    client.write(Buffer.from([0, 0x68, 0x65]));
    await new Promise((r) => setTimeout(r, 20));
    client.write('llo+tunnel');
    assert.equal(String(await frame), 'hello');
    assert.equal(String(await native.peekHead(fd, 64, 2000)), '+tunnel', 'what follows the frame stays');
    native.recvDiscard(fd, 7);
    client.write(Buffer.from([0, 0]));
    assert.equal((await native.readFrame(fd, 2000)).length, 0, 'a zero-length frame is empty');
    client.end(Buffer.from([9, 0, 0x61]));
    await assert.rejects(native.readFrame(fd, 2000), { code: 'ECONNRESET' });
  } finally {
    close();
    server.close();
  }
});

test('tcpConnect and unixConnect reject with the errno code; a good connect gives a usable fd', async () => {
  const gone = createServer();
  await new Promise<void>((r) => gone.listen(0, '127.0.0.1', r));
  const port = (gone.address() as { port: number }).port;
  await new Promise((r) => gone.close(r));
  await assert.rejects(native.tcpConnect('127.0.0.1', port, 2000), { code: 'ECONNREFUSED' });
  await assert.rejects(native.unixConnect(join(dir, 'none.sock'), 2000), { code: 'ENOENT' });
  assert.throws(() => native.tcpConnect('localhost', 80, 2000), { code: 'ERR_INVALID_ARG_VALUE' });
  const live = createServer((s) => {
    s.on('error', () => {});
    s.end('hi');
  });
  await new Promise<void>((r) => live.listen(0, '::1', r));
  const fd = await native.tcpConnect('::1', (live.address() as { port: number }).port, 2000);
  try {
    assert.equal(String(await native.peekHead(fd, 8, 2000)), 'hi');
  } finally {
    native.closeFd(fd);
    live.close();
  }
});

test('joinFds: greetings go first both ways, also when the socket buffer is full (through the pipe)', async () => {
  const a = await rawPair('greet-a');
  const b = await rawPair('greet-b');
  try {
    // Fill a's socket so its greeting cannot be sent at once: the client reads nothing yet.
    a.client.pause();
    const filler = Buffer.alloc(4096, 0x2e);
    let queued = 0;
    for (;;) {
      try {
        native.sendAll(a.fd, filler);
        queued += filler.length;
      } catch (e) {
        assert.equal((e as NodeJS.ErrnoException).code, 'EAGAIN');
        break;
      }
    }
    const closed = new Promise<{ aToB: number; bToA: number }>((resolve) =>
      joinFds(native, a.fd, b.fd, {
        greetA: Buffer.from('GREET-A'),
        greetB: Buffer.from('GREET-B'),
        onClose: resolve,
      }),
    );
    a.close();
    b.close();
    const read = (s: Socket, done: (got: Buffer) => boolean) =>
      new Promise<Buffer>((resolve) => {
        let got = Buffer.alloc(0);
        s.on('data', (d: Buffer) => {
          got = Buffer.concat([got, d]);
          if (done(got)) resolve(got);
        });
        s.resume();
      });
    const atB = read(b.client, (got) => got.length >= Buffer.byteLength('GREET-Ba→b'));
    b.client.write('b→a');
    a.client.write('a→b');
    const tail = 'GREET-Ab→a';
    const gotA = await read(a.client, (got) =>
      got.toString('latin1').endsWith(Buffer.from(tail).toString('latin1')),
    );
    const filled = gotA.length - Buffer.byteLength(tail);
    assert.ok(filled >= queued, `the filler (${filled} bytes) came first`);
    assert.equal(
      gotA.subarray(0, filled).every((x) => x === 0x2e),
      true,
      'only filler before the greeting',
    );
    assert.equal(String(await atB), 'GREET-Ba→b');
    a.client.end();
    b.client.end();
    const info = await closed;
    assert.deepEqual(info, { aToB: Buffer.byteLength('a→b'), bToA: Buffer.byteLength('b→a'), error: null });
  } finally {
    a.client.destroy();
    b.client.destroy();
    a.server.close();
    b.server.close();
  }
});
