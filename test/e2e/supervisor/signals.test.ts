// Signals, graceful stop, orphan reaping and restart policies of `cloister enclave`, with real processes.
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { test } from 'node:test';
import { procStat, readLogs, readStatus, startEnclave, waitUntil } from '../../helpers/supervisor-harness.ts';

const T = { timeout: 30000 };
const node = process.execPath;

test('forwards SIGUSR1 (and friends) to the app, which keeps running', T, async (t) => {
  const app = `for (const s of ['SIGUSR1', 'SIGUSR2', 'SIGHUP']) process.on(s, () => console.log('app got ' + s));
console.log('ready'); setInterval(() => {}, 1000);`;
  const enclave = startEnclave(t, { app: [node, '-e', app] });
  const logs = await readLogs(t, enclave);
  await logs.waitFor('ready\n');
  for (const sig of ['SIGUSR1', 'SIGUSR2', 'SIGHUP'] as const) {
    enclave.proc.kill(sig);
    await logs.waitFor(`app got ${sig}\n`);
  }
  const status = await readStatus(t, enclave);
  await status.waitFor(['running']);
  assert.equal(enclave.proc.exitCode, null);
});

test('SIGTERM stops the app gracefully and cloister exits with its code', T, async (t) => {
  const app = `process.on('SIGTERM', () => { console.log('app cleaning up'); setTimeout(() => process.exit(0), 100); });
console.log('ready'); setInterval(() => {}, 1000);`;
  const enclave = startEnclave(t, { app: [node, '-e', app] });
  const logs = await readLogs(t, enclave);
  const status = await readStatus(t, enclave);
  await logs.waitFor('ready\n');
  enclave.proc.kill('SIGTERM');
  assert.deepEqual(await status.waitFor(['exited', 'signaled']), { status: 'exited', code: 0 });
  assert.deepEqual(await enclave.exited, { code: 0, signal: null });
  assert.match(logs.text, /app cleaning up/);
});

test('an app that ignores SIGTERM is killed after the grace period', T, async (t) => {
  const app = `process.on('SIGTERM', () => console.log('ignoring SIGTERM')); console.log('ready'); setInterval(() => {}, 1000);`;
  const enclave = startEnclave(t, { app: [node, '-e', app], settings: 'app:\n  stop_grace_ms: 300\n' });
  const logs = await readLogs(t, enclave);
  const status = await readStatus(t, enclave);
  await logs.waitFor('ready\n');
  enclave.proc.kill('SIGTERM');
  const final = await status.waitFor(['exited', 'signaled']);
  assert.deepEqual(final, { status: 'signaled', signal: 9, signal_name: 'SIGKILL' });
  assert.deepEqual(await enclave.exited, { code: 128 + 9, signal: null });
  assert.match(logs.text, /ignoring SIGTERM/);
  assert.match(logs.text, /did not stop in time; sending SIGKILL/);
});

test('on stop, what the app left in its process group is killed too', T, async (t) => {
  // The straggler ignores SIGTERM and outlives the app; cloister's exit must not leave it running.
  const enclave = startEnclave(t, {
    app: ['sh', '-c', '(trap "" TERM; sleep 30; echo unreachable) & echo "straggler=$!"; sleep 30'],
    settings: 'app:\n  stop_grace_ms: 5000\n',
  });
  const logs = await readLogs(t, enclave);
  const straggler = Number(/straggler=(\d+)/.exec(await logs.waitFor(/straggler=\d+\n/))![1]);
  const status = await readStatus(t, enclave);
  await status.waitFor(['running']);
  enclave.proc.kill('SIGTERM');
  // The app itself (sh) dies of the forwarded SIGTERM; the straggler does not...
  assert.deepEqual(await status.waitFor(['signaled', 'exited']), {
    status: 'signaled',
    signal: 15,
    signal_name: 'SIGTERM',
  });
  assert.deepEqual(await enclave.exited, { code: 128 + 15, signal: null });
  // ...until cloister SIGKILLs what is left of the group on its way out, and reaps it (no zombie left).
  await waitUntil('the straggler to be gone', () => (procStat(straggler) === null ? true : undefined));
});

test('an app killed by a signal is reported with a numeric signal', T, async (t) => {
  const enclave = startEnclave(t, { app: ['sh', '-c', 'kill -USR2 $$'] });
  const status = await readStatus(t, enclave);
  const line = await status.waitFor(['signaled', 'exited']);
  assert.deepEqual(line, { status: 'signaled', signal: 12, signal_name: 'SIGUSR2' });
  const raw = status.lines.find((l) => l.includes('signaled'))!;
  assert.equal(raw, '{"status":"signaled","signal":12,"signal_name":"SIGUSR2"}');
});

test('orphans the app leaves behind are reaped, and the app status is not stolen', T, async (t) => {
  const enclave = startEnclave(t, { app: ['sh', '-c', 'sleep 1 & echo "orphan=$!"; exit 7'] });
  const cloisterPid = enclave.proc.pid!;
  const logs = await readLogs(t, enclave);
  const text = await logs.waitFor(/orphan=\d+\n/);
  const orphan = Number(/orphan=(\d+)/.exec(text)![1]);
  const status = await readStatus(t, enclave);
  assert.deepEqual(await status.waitFor(['exited', 'signaled']), { status: 'exited', code: 7 });
  // The orphan was reparented to cloister (child subreaper)...
  const st = procStat(orphan);
  assert.ok(st, 'the orphan should still be sleeping');
  assert.equal(st.ppid, cloisterPid);
  // ...and once it exits cloister collects it: it does not stay behind as a zombie.
  await waitUntil('the orphan to be reaped', () => (procStat(orphan) === null ? true : undefined), 10000);
  const zombies = readdirSync('/proc')
    .filter((n) => /^\d+$/.test(n))
    .map((n) => procStat(Number(n)))
    .filter((s) => s && s.ppid === cloisterPid && s.state === 'Z');
  assert.deepEqual(zombies, []);
});

test('as PID 1 (own PID namespace) cloister reaps orphans too', T, async (t) => {
  const enclave = startEnclave(t, {
    app: ['sh', '-c', 'sleep 0.3 & echo "orphan=$!"; exit 7'],
    flags: ['-v'],
    pid1: true,
  });
  const logs = await readLogs(t, enclave);
  const text = await logs.waitFor(/orphan=\d+\n/);
  const orphan = Number(/orphan=(\d+)/.exec(text)![1]);
  // Reparented to PID 1 (cloister), which collects it when it exits.
  await logs.waitFor(`"pid":${orphan},"status":0,"msg":"reaped an orphaned process"`);
  const status = await readStatus(t, enclave);
  assert.deepEqual(await status.waitFor(['exited', 'signaled']), { status: 'exited', code: 7 });
});

test(
  'on-failure restarts a failing app with doubling backoff, then gives up at max_restarts',
  T,
  async (t) => {
    const enclave = startEnclave(t, {
      app: ['sh', '-c', 'echo run; exit 2'],
      settings:
        'app:\n  restart: on-failure\n  restart_backoff_ms: 50\n  restart_backoff_max_ms: 150\n  max_restarts: 4\n',
    });
    const status = await readStatus(t, enclave);
    assert.deepEqual(await status.waitFor(['exited']), { status: 'exited', code: 2 });
    const logs = await readLogs(t, enclave);
    const text = await logs.waitFor('gave up after 4 restarts in a row');
    assert.equal(text.match(/^run$/gm)?.length, 5);
    const delays = [...text.matchAll(/restarting in (\d+) ms \(restart (\d+)\)/g)].map((m) => [
      Number(m[2]),
      Number(m[1]),
    ]);
    assert.deepEqual(delays, [
      [1, 50],
      [2, 100],
      [3, 150],
      [4, 150],
    ]);
    // The status stream saw the restarts as non-final lines.
    const restarting = status.statuses.filter((s) => s.status === 'restarting');
    assert.ok(restarting.every((s) => s.code === 2 && typeof s.delay_ms === 'number'));
    assert.equal(enclave.proc.exitCode, null);
  },
);

test('on-failure does not restart an app that exits 0; never does not restart at all', T, async (t) => {
  const ok = startEnclave(t, { app: ['sh', '-c', 'echo run'], settings: 'app:\n  restart: on-failure\n' });
  const fail = startEnclave(t, {
    app: ['sh', '-c', 'echo run; exit 1'],
    settings: 'app:\n  restart: never\n',
  });
  for (const [enclave, code] of [
    [ok, 0],
    [fail, 1],
  ] as const) {
    const status = await readStatus(t, enclave);
    assert.deepEqual(await status.waitFor(['exited']), { status: 'exited', code });
    const logs = await readLogs(t, enclave);
    const text = await logs.waitFor('Entrypoint exited');
    assert.equal(text.match(/^run$/gm)?.length, 1);
    assert.doesNotMatch(text, /restarting in/);
  }
});

test('always restarts even a clean exit; SIGTERM during the backoff stops cloister at once', T, async (t) => {
  const enclave = startEnclave(t, {
    app: ['sh', '-c', 'echo run'],
    settings:
      'app:\n  restart: always\n  restart_backoff_ms: 20\n  restart_backoff_max_ms: 20\n  max_restarts: 2\n',
  });
  const status = await readStatus(t, enclave);
  assert.deepEqual(await status.waitFor(['exited']), { status: 'exited', code: 0 });
  const text = await (await readLogs(t, enclave)).waitFor('gave up after 2 restarts');
  assert.equal(text.match(/^run$/gm)?.length, 3);

  const waiting = startEnclave(t, {
    app: ['sh', '-c', 'exit 5'],
    settings: 'app:\n  restart: always\n  restart_backoff_ms: 600000\n  restart_backoff_max_ms: 600000\n',
  });
  const st = await readStatus(t, waiting);
  const restarting = await st.waitFor(['restarting']);
  assert.equal(restarting.delay_ms, 600000);
  waiting.proc.kill('SIGTERM');
  assert.deepEqual(await waiting.exited, { code: 5, signal: null });
  assert.deepEqual(st.statuses.at(-1), { status: 'exited', code: 5 });
});
