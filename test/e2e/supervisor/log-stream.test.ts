// The log stream (vsock 17001): ring replay, several readers, slow readers, --no-console.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CID,
  connectPort,
  LogReader,
  readLogs,
  readStatus,
  startEnclave,
  waitUntil,
} from '../../helpers/supervisor-harness.ts';

const T = { timeout: 30000 };
const node = process.execPath;

test(
  'a late reader gets the whole backlog in order; two readers at once get the same bytes',
  T,
  async (t) => {
    // The app waits a little so both readers are usually attached before the first line.
    const app = `let i = 0; setTimeout(() => {
const id = setInterval(() => { for (let k = 0; k < 50; k++) console.log('line ' + i++); if (i >= 1000) clearInterval(id); }, 1);
}, 300);`;
    const enclave = startEnclave(t, { app: [node, '-e', app] });
    const [a, b] = [await readLogs(t, enclave), await readLogs(t, enclave)];
    await a.waitFor('line 999\n');
    await b.waitFor('line 999\n');
    const appLines = (r: LogReader) => r.text.split('\n').filter((l) => l.startsWith('line '));
    const expected = Array.from({ length: 1000 }, (_, i) => `line ${i}`);
    assert.deepEqual(appLines(a), expected);
    assert.deepEqual(appLines(b), expected);
    // A third reader, after the fact, is replayed the same stream from the start.
    const late = await readLogs(t, enclave);
    await late.waitFor('line 999\n');
    assert.equal(late.text, a.text.slice(0, late.text.length));
    assert.deepEqual(appLines(late), expected);
  },
);

test('the ring keeps only the newest buffer_bytes for a new reader', T, async (t) => {
  const app = `for (let i = 0; i < 5000; i++) console.log('row ' + String(i).padStart(5, '0'));`;
  const enclave = startEnclave(t, { app: [node, '-e', app], settings: 'log:\n  buffer_bytes: 4096\n' });
  const status = await readStatus(t, enclave);
  await status.waitFor(['exited']);
  const logs = await readLogs(t, enclave);
  await logs.waitFor('"msg":"the app has ended');
  await new Promise((r) => setTimeout(r, 100));
  assert.ok(logs.bytes <= 4096, `got ${logs.bytes} bytes`);
  assert.ok(logs.bytes > 2048);
  assert.match(logs.text, /row 04999\n/);
  assert.doesNotMatch(logs.text, /row 00000/);
});

test('a reader that does not read never blocks the app; it skips ahead with a marker', T, async (t) => {
  // 8 MiB of output against a 64 KiB ring and a reader that has stopped reading.
  const app = `const line = 'x'.repeat(1023) + '\\n'; let n = 0;
function more() { while (n < 8192) { n++; if (!process.stdout.write(line)) return process.stdout.once('drain', more); }
  console.log('app done'); }
setTimeout(more, 200);`;
  const enclave = startEnclave(t, { app: [node, '-e', app], settings: 'log:\n  buffer_bytes: 65536\n' });
  const stalled = await connectPort(t, enclave, 17001);
  stalled.pause();
  const status = await readStatus(t, enclave);
  // The app finishes although one reader has not read a byte.
  assert.deepEqual(await status.waitFor(['exited'], 20000), { status: 'exited', code: 0 });
  const slow = new LogReader(stalled);
  stalled.resume();
  const text = await slow.waitFor('"msg":"the app has ended');
  assert.match(text, /\[cloister\] this log reader fell behind: \d+ bytes skipped\n/);
  assert.match(text, /app done\n/);
  assert.ok(slow.bytes < 8 * 1024 * 1024, `the slow reader got ${slow.bytes} bytes, not the whole 8 MiB`);
});

test('--no-console: no log port, the app writes straight to cloister stdout/stderr', T, async (t) => {
  const enclave = startEnclave(t, {
    app: ['sh', '-c', 'echo "direct out"; echo "direct err" >&2'],
    flags: ['--no-console'],
  });
  const status = await readStatus(t, enclave);
  await status.waitFor(['exited']);
  assert.equal(existsSync(join(enclave.vsockDir, String(CID), '17001.sock')), false);
  assert.ok(existsSync(join(enclave.vsockDir, String(CID), '17000.sock')));
  await waitUntil('direct output', () => (enclave.stdout().includes('direct out\n') ? true : undefined));
  await waitUntil('direct stderr', () => (enclave.stderr().includes('direct err\n') ? true : undefined));
  // cloister's own log lines go to stderr.
  assert.match(enclave.stderr(), /"msg":"app started"/);
});

// The order of stdout and stderr lines, and whole lines when they are two pipes (no native addon):
// supervisor-order.test.ts.

// The parent instance is hostile: a reader of the status (17000) or log (17001) port that floods it with
// bytes, or drops its connection mid-stream, must not disturb cloister, the app or the other readers.
test('readers that send junk or vanish mid-stream leave cloister and the other readers unharmed', {
  timeout: 30000,
}, async (t) => {
  // The app prints a line every 5 ms until it has printed 600, so the streams are busy meanwhile.
  const app = `let i = 0; const id = setInterval(() => { console.log('tick ' + i++); if (i >= 600) clearInterval(id); }, 5);`;
  const enclave = startEnclave(t, { app: [node, '-e', app] });
  const good = await readLogs(t, enclave);
  await good.waitFor('tick 10\n');
  const junk = Buffer.alloc(1 << 20, 0x7b); // 1 MiB of '{'
  for (const port of [17000, 17001]) {
    // Floods, then hangs up while cloister is still writing to it.
    for (let i = 0; i < 5; i++) {
      const s = await connectPort(t, enclave, port);
      s.on('error', () => {});
      s.write(junk);
      s.write(junk, () => s.destroy());
    }
    // Half-closes at once, then goes away.
    const h = await connectPort(t, enclave, port);
    h.on('error', () => {});
    h.end('garbage\n');
    // Connects and disconnects before reading a byte.
    for (let i = 0; i < 20; i++) (await connectPort(t, enclave, port)).destroy();
  }
  await good.waitFor('tick 599\n', 20000);
  const lines = good.text.split('\n').filter((l) => l.startsWith('tick '));
  assert.deepEqual(
    lines,
    Array.from({ length: 600 }, (_, i) => `tick ${i}`),
  );
  // New readers are still served: the status stream answers at once, the log is replayed.
  const status = await readStatus(t, enclave);
  assert.deepEqual(await status.waitFor(['exited']), { status: 'exited', code: 0 });
  const late = new LogReader(await connectPort(t, enclave, 17001));
  await late.waitFor('tick 599\n');
  assert.equal(enclave.proc.exitCode, null, 'cloister is still running');
  assert.ok(!/uncaught|unhandled/.test(good.text), 'no uncaught error was logged');
});
