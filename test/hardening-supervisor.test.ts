// Security review of the status (17000) and log (17001) ports: the parent instance is hostile. A reader
// that floods the port with bytes, or drops its connection mid-stream, must not disturb cloister, the
// app or the other readers.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { connectPort, LogReader, readLogs, readStatus, startEnclave } from './supervisor-harness.ts';

const node = process.execPath;

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
