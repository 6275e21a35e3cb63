// The supervisor's pure parts: log ring, line joining, restart decisions, status lines.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_SETTINGS } from '../../../src/config/types.ts';
import { LogRing } from '../../../src/log/ring.ts';
import { LineJoiner } from '../../../src/supervisor/line-joiner.ts';
import { RestartTracker } from '../../../src/supervisor/restart.ts';
import { formatStatus, parseStatusLine, STATUS_LINE_MAX } from '../../../src/supervisor/status.ts';

test('LogRing keeps the newest bytes across wraparound and reports what a reader missed', () => {
  const ring = new LogRing(10);
  ring.append('abcdef');
  assert.deepEqual(ring.read(0, 100), { data: Buffer.from('abcdef'), next: 6, skipped: 0 });
  ring.append('ghijkl');
  assert.equal(ring.start, 2);
  assert.equal(ring.end, 12);
  assert.deepEqual(ring.read(0, 100), { data: Buffer.from('cdefghijkl'), next: 12, skipped: 2 });
  assert.deepEqual(ring.read(8, 3), { data: Buffer.from('ijk'), next: 11, skipped: 0 });
  // A chunk larger than the ring keeps only its tail.
  ring.append('0123456789ABCDEFGHIJ');
  assert.equal(ring.read(ring.start, 100).data.toString(), 'ABCDEFGHIJ');
  assert.equal(ring.end, 32);
});

test('LineJoiner emits whole lines and holds a partial one until its newline', () => {
  const out: string[] = [];
  const j = new LineJoiner((d) => out.push(d.toString()));
  j.push(Buffer.from('one\ntw'));
  j.push(Buffer.from('o'));
  assert.deepEqual(out, ['one\n']);
  j.push(Buffer.from('\nthree\nfo'));
  assert.deepEqual(out, ['one\n', 'two\nthree\n']);
  j.flush();
  assert.deepEqual(out, ['one\n', 'two\nthree\n', 'fo']);
});

test('RestartTracker doubles the delay, caps it, and gives up after max_restarts in a row', () => {
  const app = {
    ...DEFAULT_SETTINGS.app,
    restart: 'on-failure' as const,
    restart_backoff_ms: 100,
    restart_backoff_max_ms: 350,
    max_restarts: 3,
  };
  const r = new RestartTracker(app);
  const fail = { code: 1, signal: null, signalName: null, ranMs: 5 };
  assert.deepEqual(r.decide(fail), { restart: true, delayMs: 100, attempt: 1 });
  assert.deepEqual(r.decide(fail), { restart: true, delayMs: 200, attempt: 2 });
  assert.deepEqual(r.decide(fail), { restart: true, delayMs: 350, attempt: 3 });
  assert.equal(r.decide(fail).restart, false);
  // A run that lasted long enough (10 s, or the maximum backoff if longer) starts a new series.
  const r2 = new RestartTracker(app);
  for (let i = 0; i < 3; i++) r2.decide(fail);
  assert.equal(r2.decide({ ...fail, ranMs: 9000 }).restart, false);
  assert.deepEqual(r2.decide({ ...fail, ranMs: 10_000 }), { restart: true, delayMs: 100, attempt: 1 });
  assert.equal(new RestartTracker(app).decide({ ...fail, code: 0 }).restart, false);
  assert.equal(new RestartTracker({ ...app, restart: 'always' }).decide({ ...fail, code: 0 }).restart, true);
  assert.equal(new RestartTracker({ ...app, restart: 'never' }).decide(fail).restart, false);
});

test('status lines are valid JSON and a long fatal error is cut to fit 1024 bytes', () => {
  assert.equal(formatStatus({ status: 'exited', code: -1 }), '{"status":"exited","code":-1}\n');
  const line = formatStatus({ status: 'fatal', error: `"quoted"\n${'é'.repeat(2000)}` });
  assert.ok(Buffer.byteLength(line) <= STATUS_LINE_MAX);
  const parsed = JSON.parse(line);
  assert.equal(parsed.status, 'fatal');
  assert.ok(parsed.error.startsWith('"quoted"\né'));
  assert.ok(parsed.error.endsWith('…'));
});

test('parseStatusLine reads cloister lines and odyn lines alike', () => {
  assert.deepEqual(parseStatusLine('{ "status": "running" }'), { status: 'running' });
  assert.deepEqual(parseStatusLine('{ "status": "exited", "code": 3 }'), { status: 'exited', code: 3 });
  // odyn names the signal; cloister sends the number and the name.
  assert.deepEqual(parseStatusLine('{ "status": "signaled", "signal": "SIGTERM" }'), {
    status: 'signaled',
    signal: 15,
    signal_name: 'SIGTERM',
  });
  assert.deepEqual(parseStatusLine('{"status":"signaled","signal":9,"signal_name":"SIGKILL"}'), {
    status: 'signaled',
    signal: 9,
    signal_name: 'SIGKILL',
  });
  // odyn's unescaped fatal text is not JSON, but still a fatal status.
  assert.deepEqual(parseStatusLine('{ "status": "fatal", "error": "bad "quote"" }'), {
    status: 'fatal',
    error: 'bad "quote"',
  });
  for (const line of [formatStatus({ status: 'restarting', code: 2, restarts: 1, delay_ms: 50 })]) {
    assert.deepEqual(parseStatusLine(line.trim()), {
      status: 'restarting',
      code: 2,
      restarts: 1,
      delay_ms: 50,
    });
  }
  assert.equal(parseStatusLine('{"status":"exited"}'), null);
  assert.equal(parseStatusLine('{"status":"dancing"}'), null);
  assert.equal(parseStatusLine('not json'), null);
});
