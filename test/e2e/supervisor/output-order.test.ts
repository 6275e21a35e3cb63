// The order of the app's stdout and stderr in the log stream (vsock 17001). With the native addon the
// app gets one pipe for both fds, as under odyn, so the stream keeps the app's own order; without it
// (a copy of the bundle where no addon is found) they are two pipes, joined into whole lines.
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { loadNative } from '../../../src/native.ts';
import { readLogs, startEnclave } from '../../helpers/supervisor-harness.ts';

const T = { timeout: 30000 };
const node = process.execPath;
const TWO_PIPES_WARNING = '"msg":"app stdout and stderr are two pipes';

/** Lines of the log stream that are not cloister's own (pino JSON) lines. */
function appLines(text: string): string[] {
  return text.split('\n').filter((l) => l !== '' && !l.startsWith('{"level":'));
}

/** Equal strings, or a failure that shows where they part (not two 200 KB strings). */
function sameText(actual: string, expected: string): void {
  if (actual === expected) return;
  let i = 0;
  while (i < actual.length && actual[i] === expected[i]) i++;
  const around = (s: string) => JSON.stringify(s.slice(Math.max(0, i - 80), i + 80));
  assert.fail(
    `differs at byte ${i} of ${expected.length}:\n  got      ${around(actual)}\n  expected ${around(expected)}`,
  );
}

test('makePipe gives a close-on-exec pipe: a read end and a write end', () => {
  const native = loadNative();
  assert.equal(typeof native.makePipe, 'function');
  const [r, w] = native.makePipe!();
  try {
    assert.ok(Number.isInteger(r) && Number.isInteger(w) && r !== w);
    // fdinfo flags are octal: O_CLOEXEC is 02000000; the ends are O_RDONLY (0) and O_WRONLY (1).
    const flags = (fd: number) => {
      const m = /^flags:\s+([0-7]+)$/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      return Number.parseInt(m![1]!, 8);
    };
    assert.equal(flags(r) & 0o2000000, 0o2000000);
    assert.equal(flags(w) & 0o2000000, 0o2000000);
    assert.equal(flags(r) & 3, 0);
    assert.equal(flags(w) & 3, 1);
  } finally {
    native.closeFd(r);
    native.closeFd(w);
  }
});

test('stdout and stderr written alternately reach the log stream in the order written', T, async (t) => {
  const enclave = startEnclave(t, {
    app: ['sh', '-c', 'for i in $(seq 1 200); do echo out$i; echo err$i >&2; done'],
  });
  const logs = await readLogs(t, enclave);
  const text = await logs.waitFor('Entrypoint exited with 0');
  const expected = Array.from({ length: 200 }, (_, k) => [`out${k + 1}`, `err${k + 1}`]).flat();
  assert.deepEqual(appLines(text), expected);
  assert.ok(!text.includes(TWO_PIPES_WARNING), 'one shared pipe, no fallback warning');
});

test('the app gets one pipe as fds 1 and 2 and no other end of it', T, async (t) => {
  // Every fd of the app (sh: $$ is the app itself, even inside $(...)) that is a pipe, as "FD n pipe:[ino]".
  const script =
    'for f in /proc/$$/fd/*; do l=$(readlink $f); case $l in pipe:*) echo "FD $(basename $f) $l";; esac; done';
  const enclave = startEnclave(t, { app: ['sh', '-c', script] });
  const logs = await readLogs(t, enclave);
  const text = await logs.waitFor('Entrypoint exited with 0');
  const fds = new Map(
    appLines(text)
      .filter((l) => l.startsWith('FD '))
      .map((l) => l.slice(3).split(' ') as [string, string]),
  );
  const pipe = fds.get('1');
  assert.match(pipe ?? '', /^pipe:\[\d+\]$/);
  assert.equal(fds.get('2'), pipe, 'stdout and stderr are the same pipe');
  // Neither the read end nor cloister's copy of the write end leaked into the app.
  const others = [...fds].filter(([fd, p]) => p === pipe && fd !== '1' && fd !== '2');
  assert.deepEqual(others, []);
});

test("partial lines reach the stream as written, never cut by cloister's own lines", T, async (t) => {
  // Long lines written in pieces to both fds; halfway through each line the app sends cloister a SIGHUP,
  // which cloister forwards and logs while the app goes on writing. The app ignores SIGHUP.
  // writeSync, not process.stdout/stderr: those are two libuv handles that each queue on their own once
  // the pipe is full, so a Node app can reorder its own output under backpressure (as under odyn).
  const app = `const { writeSync } = require('node:fs'); process.on('SIGHUP', () => {});
for (let i = 0; i < 30; i++) {
  const o = 'OUT' + i + '-' + 'o'.repeat(3000); const e = 'ERR' + i + '-' + 'e'.repeat(3000);
  for (let k = 0; k < o.length; k += 700) {
    writeSync(1, o.slice(k, k + 700)); writeSync(2, e.slice(k, k + 700));
    if (k === 1400) process.kill(process.ppid, 'SIGHUP');
  }
  writeSync(1, '\\n'); writeSync(2, '\\n');
}`;
  const enclave = startEnclave(t, { app: [node, '-e', app] });
  const logs = await readLogs(t, enclave);
  // A forwarded SIGHUP that lands while the app is exiting (its handler gone) ends it by SIGHUP;
  // how it ended does not matter here, only what it wrote.
  const text = await logs.waitFor('"msg":"Entrypoint ');
  // The app's bytes in the order it wrote them.
  let expected = '';
  for (let i = 0; i < 30; i++) {
    const o = `OUT${i}-${'o'.repeat(3000)}`;
    const e = `ERR${i}-${'e'.repeat(3000)}`;
    for (let k = 0; k < o.length; k += 700) expected += o.slice(k, k + 700) + e.slice(k, k + 700);
    expected += '\n\n';
  }
  sameText(appLines(text).join('\n'), appLines(expected).join('\n'));
  // cloister did log while the app was writing (else this would prove nothing).
  assert.ok((text.match(/"signal":"SIGHUP"/g) ?? []).length >= 1);
});

test('without the native addon: two pipes, lines never cut into each other, and a warning', T, async (t) => {
  // A copy of the bundle finds no addon (it looks beside the bundle and beside process.execPath).
  const copy = mkdtempSync(join(tmpdir(), 'cloister-noaddon-'));
  t.after(() => rmSync(copy, { recursive: true, force: true }));
  cpSync('dist', join(copy, 'dist'), { recursive: true });
  // Both streams write long lines in small pieces at once; every line must arrive whole.
  const app = `let i = 0; const id = setInterval(() => {
  const o = 'OUT' + i + '-' + 'o'.repeat(3000); const e = 'ERR' + i + '-' + 'e'.repeat(3000);
  for (let k = 0; k < o.length; k += 700) { process.stdout.write(o.slice(k, k + 700)); process.stderr.write(e.slice(k, k + 700)); }
  process.stdout.write('\\n'); process.stderr.write('\\n'); if (++i === 50) clearInterval(id); }, 2);`;
  const enclave = startEnclave(t, { app: [node, '-e', app], cli: join(copy, 'dist', 'cli.js') });
  const logs = await readLogs(t, enclave);
  const text = await logs.waitFor('Entrypoint exited');
  assert.ok(text.includes(TWO_PIPES_WARNING), 'the fallback is logged');
  assert.match(text, /"reason":"cloister native addon not found/);
  const lines = text.split('\n').filter((l) => l.startsWith('OUT') || l.startsWith('ERR'));
  assert.equal(lines.length, 100);
  for (const l of lines) assert.match(l, /^(OUT\d+-o{3000}|ERR\d+-e{3000})$/);
});
