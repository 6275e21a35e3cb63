// EmulatedTransport.connectFd against a Unix listener whose backlog is full: Linux fails a
// non-blocking connect at once with EAGAIN there (vsock and TCP queue or refuse instead). A burst of
// tunnels meets this on the emulated transport (bench/egress.ts opens 1000 at once); the connect
// must wait for room until its timeout, not fail the tunnel.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadNative } from '../../../src/native.ts';
import { EmulatedTransport, socketPath } from '../../../src/transport/emulated.ts';

// A listener that does not accept until it reads a line on stdin, then accepts everything.
const LISTENER = `
import socket, sys, os
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(sys.argv[1])
s.listen(0)
print('listening', flush=True)
sys.stdin.readline()
kept = []
while True:
    c, _ = s.accept()
    kept.append(c)
`;

test('connectFd waits while the Unix listener backlog is full, and connects once there is room', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-backlog-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const transport = new EmulatedTransport(dir, 3);
  const path = socketPath(dir, 16, 5000);
  mkdirSync(join(dir, '16'));
  const py = spawn('python3', ['-c', LISTENER, path], { stdio: ['pipe', 'pipe', 'inherit'] });
  t.after(() => py.kill('SIGKILL'));
  await new Promise<void>((resolve, reject) => {
    py.once('error', (e) => reject(new Error(`python3 is needed for this test: ${e.message}`)));
    py.stdout!.once('data', () => resolve());
  });

  // Fill the backlog: connects succeed until the queue is full, then fail with EAGAIN.
  const native = loadNative();
  const held: number[] = [];
  t.after(() => {
    for (const fd of held) native.closeFd(fd);
  });
  const filling = [];
  for (let i = 0; i < 8; i++) filling.push(connectOnce(path));
  const outcomes = await Promise.all(filling);
  assert.ok(
    outcomes.includes('EAGAIN'),
    `a full backlog should refuse a non-blocking connect with EAGAIN: ${outcomes.join(', ')}`,
  );

  // A connect whose timeout passes while the backlog stays full ends with the kernel's answer.
  await assert.rejects(transport.connectFd(16, 5000, 300), { code: 'EAGAIN' });

  // The raw connect now waits: nothing accepts yet.
  let settled = false;
  const pending = transport.connectFd(16, 5000, 10_000).finally(() => {
    settled = true;
  });
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(settled, false, 'connectFd gave up while the backlog was full instead of waiting');
  py.stdin!.write('accept\n');
  const fd = await pending;
  assert.ok(Number.isInteger(fd) && fd >= 0);
  held.push(fd);
});

/** One Node (libuv) connect: 'ok' or its error code; the socket stays open (it holds a backlog slot). */
function connectOnce(path: string): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once('connect', () => resolve('ok'));
    s.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
  });
}
