// vsock connect (native/src/vsock.c) waits on the loop's poller, not on a libuv thread-pool thread:
// a host that stops accepting on the egress port must not stall the fs, crypto and NSM work that
// shares the pool's 4 threads (issue 10). This machine has no vsock loopback, so an LD_PRELOAD shim
// (test/helpers/native/vsock_shim.c) makes AF_VSOCK connects stay in progress for ever, or complete
// to a Unix echo server; the real-kernel run of the same scenario is the lab's (test/lab/).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { buildShims } from '../../helpers/native/shims.ts';

const CHILD = 'test/helpers/native/vsock-connect-child.ts';
let dir: string;
let preload: string;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cloister-vsock-connect-'));
  preload = buildShims(dir);
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** Runs the child under both shims (not spawnSync: the echo server lives on this process's loop). */
async function child(args: string[], env: Record<string, string> = {}): Promise<unknown> {
  const p = spawn(process.execPath, ['--import', 'tsx', CHILD, ...args], {
    env: { ...process.env, LD_PRELOAD: preload, UV_THREADPOOL_SIZE: '4', ...env },
    timeout: 60_000,
  });
  let stdout = '';
  let stderr = '';
  p.stdout.on('data', (c) => (stdout += c));
  p.stderr.on('data', (c) => (stderr += c));
  const [code] = (await once(p, 'close')) as [number | null];
  assert.equal(code, 0, `child failed: ${stderr}`);
  return JSON.parse(stdout.trim().split('\n').at(-1) ?? '');
}

test('50 vsock connects to a host that never accepts leave the thread pool free, then time out cleanly', async () => {
  const out = (await child(['stall', '50', '1500'])) as {
    pool: { name: string; pendingConnects: number }[];
    ends: string[];
    fdsBefore: number;
    fdsAfter: number;
  };
  // Every fs, crypto and NSM call finished while all 50 connects were still waiting: none of them
  // held a pool thread. (With connect on the pool, the 4 threads are taken by the first 4 connects
  // and the work runs only after every connect has timed out: pendingConnects 0.)
  assert.equal(out.pool.length, 16);
  for (const w of out.pool) assert.equal(w.pendingConnects, 50, `${w.name} finished behind the connects`);
  // Each connect ended by its own timeout, with the errno code, and gave its fd back.
  assert.deepEqual(out.ends, Array(50).fill('ETIMEDOUT'));
  assert.equal(out.fdsAfter, out.fdsBefore);
});

test('a vsock connect that completes later resolves to a working socket', async () => {
  const path = join(dir, 'echo.sock');
  const server = createServer({ allowHalfOpen: true }, (s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c) => chunks.push(c));
    s.on('end', () => s.end(`echo:${Buffer.concat(chunks)}`));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    const out = await child(['echo', '5005'], { VSOCK_SHIM_UNIX: path, VSOCK_SHIM_UNIX_PORT: '5005' });
    assert.deepEqual(out, { reply: 'echo:ping' });
  } finally {
    server.close();
  }
});

test('a worker thread that exits with vsock connects pending closes their fds and crashes nothing', async () => {
  // libuv closes the worker's handles after its copy of the addon may be unloaded: no addon code may run then.
  const out = (await child(['worker-exit'])) as { closedByExit: number; after: string };
  // The 5 stalled fds are closed by the exit (another runtime pipe closing meanwhile may add to the count).
  assert.ok(out.closedByExit >= 5, `the worker's exit closed ${out.closedByExit} of its 5 stalled fds`);
  assert.equal(out.after, 'ETIMEDOUT');
});
