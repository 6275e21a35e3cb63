// `cloister enclave` end to end: a real supervisor under `unshare -n`, read over the emulated vsock.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { readLogs, readStatus, startEnclave, waitUntil } from '../../helpers/supervisor-harness.ts';

const T = { timeout: 30000 };
const node = process.execPath;

test('runs the app, reports running then exited, and stays up afterwards', T, async (t) => {
  const enclave = startEnclave(t, {
    app: ['sh', '-c', 'echo "hello from the app"; echo "to stderr" >&2; sleep 0.3; exit 3'],
  });
  const status = await readStatus(t, enclave);
  assert.deepEqual(Object.keys(await status.waitFor(['running'])).sort(), ['pid', 'status']);
  const exited = await status.waitFor(['exited']);
  assert.deepEqual(exited, { status: 'exited', code: 3 });
  // The stream is never closed and cloister keeps serving: a reader arriving now gets the final status first.
  const late = await readStatus(t, enclave);
  await late.waitFor(['exited']);
  assert.equal(late.lines[0], '{"status":"exited","code":3}');
  assert.equal(status.closed, false);
  assert.equal(enclave.proc.exitCode, null);

  const logs = await readLogs(t, enclave);
  const text = await logs.waitFor('Entrypoint exited with 3');
  assert.match(text, /hello from the app\n/);
  assert.match(text, /to stderr\n/);
  // cloister's own lines are pino JSON in the same stream.
  const own = text.split('\n').filter((l) => l.startsWith('{"level"'));
  const started = own.map((l) => JSON.parse(l)).find((l) => l.msg === 'app started');
  assert.ok(started, text);
  // At info only the program and the argument count: arguments may carry secrets (the full argv is at debug).
  assert.equal(started.argv0, 'sh');
  assert.equal(started.argc, 3);
  assert.equal(started.argv, undefined);
  // Echoed on the console too.
  await waitUntil('console echo', () => (enclave.stdout().includes('hello from the app') ? true : undefined));

  // SIGTERM after the app ended: cloister exits with the app's code.
  enclave.proc.kill('SIGTERM');
  assert.deepEqual(await enclave.exited, { code: 3, signal: null });
});

test('bootstrap brings lo up inside the namespace (and without it 127.0.0.1 is unusable)', T, async (t) => {
  // The app listens on 127.0.0.1 and connects to itself: only possible once `lo` is up.
  const probe = `const net = require('node:net');
const s = net.createServer((c) => c.end('pong')).on('error', (e) => { console.log('loopback down: ' + e.code); process.exit(1); });
s.listen(0, '127.0.0.1', () => {
  net.connect(s.address().port, '127.0.0.1').on('data', (d) => { console.log('loopback ' + d); process.exit(0); })
    .on('error', (e) => { console.log('loopback down: ' + e.code); process.exit(1); });
});`;
  const up = startEnclave(t, {
    app: [node, '-e', probe],
    noBootstrap: false,
    flags: ['--nsm', 'software', '--nsm-state', join('/tmp', `cloister-sup-nsm-${process.pid}`)],
  });
  t.after(() => spawnSync('rm', ['-rf', join('/tmp', `cloister-sup-nsm-${process.pid}`)]));
  const status = await readStatus(t, up);
  const final = await status.waitFor(['exited', 'fatal']);
  const logs = await readLogs(t, up);
  assert.deepEqual(final, { status: 'exited', code: 0 }, logs.text);
  const text = await logs.waitFor('loopback pong');
  assert.match(text, /Bringing up loopback interface/);
  assert.match(text, /Seeding \/dev\/random with entropy from nsm device/);
  assert.match(text, /Enclave initialized/);

  const down = startEnclave(t, { app: [node, '-e', probe] });
  const downStatus = await readStatus(t, down);
  assert.deepEqual(await downStatus.waitFor(['exited', 'fatal']), { status: 'exited', code: 1 });
  await (await readLogs(t, down)).waitFor(/loopback down: (EADDRNOTAVAIL|ENETUNREACH)/);
});

test("services' environment reaches the app (egress proxy variables)", T, async (t) => {
  const nsmState = join('/tmp', `cloister-sup-nsm-env-${process.pid}`);
  t.after(() => spawnSync('rm', ['-rf', nsmState]));
  const enclave = startEnclave(t, {
    app: ['sh', '-c', 'echo "proxy=$HTTPS_PROXY|$http_proxy|$NO_PROXY"'],
    manifest: 'version: v1\nname: x\ntarget: x\nsources:\n  app: x\negress:\n  allow: [example.com]\n',
    noBootstrap: false,
    flags: ['--nsm', 'software', '--nsm-state', nsmState],
  });
  const status = await readStatus(t, enclave);
  const logs = await readLogs(t, enclave);
  assert.deepEqual(await status.waitFor(['exited', 'fatal']), { status: 'exited', code: 0 }, logs.text);
  // The egress service decides the exact values; these are odyn's (docs/reference/enclaver.md, "App
  // environment").
  await logs.waitFor(
    /proxy=http:\/\/127\.0\.0\.1:10000\/\|http:\/\/127\.0\.0\.1:10000\/\|localhost,127\.0\.0\.1/,
  );
});

test('a missing entrypoint is fatal, readable, valid JSON, and cloister stays up', T, async (t) => {
  const enclave = startEnclave(t, { app: ['no-such-"app"\nreally', 'arg'] });
  const status = await readStatus(t, enclave);
  const fatal = await status.waitFor(['fatal']);
  assert.match(
    String(fatal.error),
    /cannot start the app: no-such-"app"\nreally: not found in PATH \(ENOENT/,
  );
  // Still serving: a second reader gets the same fatal line.
  const again = await readStatus(t, enclave);
  assert.equal((await again.waitFor(['fatal'])).error, fatal.error);
  assert.equal(enclave.proc.exitCode, null);
  enclave.proc.kill('SIGTERM');
  assert.equal((await enclave.exited).code, 1);
});

test('a bad manifest is reported as fatal with file, key and line', T, async (t) => {
  const enclave = startEnclave(t, {
    app: ['true'],
    manifest: 'version: v1\nname: x\ntarget: x\nsources:\n  app: x\negress:\n  allow_list: [a]\n',
  });
  const status = await readStatus(t, enclave);
  const fatal = await status.waitFor(['fatal']);
  assert.match(String(fatal.error), /^invalid configuration: .*enclaver\.yaml:7:\d+: egress\.allow_list/);
  const logs = await readLogs(t, enclave);
  await logs.waitFor('allow_list');
  assert.equal(enclave.proc.exitCode, null);
});

test('a bad cloister.yaml is fatal too', T, async (t) => {
  const enclave = startEnclave(t, { app: ['true'], settings: 'app:\n  restart: sometimes\n' });
  const status = await readStatus(t, enclave);
  const fatal = await status.waitFor(['fatal']);
  assert.match(String(fatal.error), /cloister\.yaml:2:\d+: app\.restart/);
});

test('the app runs with the configured uid/gid and its argv exactly (no shell)', T, async (t) => {
  const enclave = startEnclave(t, {
    app: [
      node,
      '-e',
      'console.log(JSON.stringify([process.getuid(), process.getgid(), process.argv.slice(1)]))',
      '$HOME',
      'a b',
      '*',
    ],
    settings: 'app:\n  uid: 65534\n  gid: 65533\n',
  });
  const status = await readStatus(t, enclave);
  assert.deepEqual(await status.waitFor(['exited', 'fatal']), { status: 'exited', code: 0 });
  const logs = await readLogs(t, enclave);
  await logs.waitFor('[65534,65533,["$HOME","a b","*"]]');
});

test('-f names the manifest and --settings a cloister.yaml elsewhere', T, async (t) => {
  const enclave = startEnclave(t, {
    app: ['sh', '-c', 'echo run; exit 4'],
    // In the config dir, but not under the default name: only --settings makes it count.
    configFlags: (conf) => {
      writeFileSync(
        join(conf, 'other.yaml'),
        'app:\n  restart: on-failure\n  max_restarts: 1\n  restart_backoff_ms: 10\n',
      );
      return ['-f', join(conf, 'enclaver.yaml'), '--settings', join(conf, 'other.yaml')];
    },
  });
  const status = await readStatus(t, enclave);
  assert.deepEqual(await status.waitFor(['exited', 'fatal']), { status: 'exited', code: 4 });
  const text = await (await readLogs(t, enclave)).waitFor('gave up after 1 restart');
  assert.equal(text.match(/^run$/gm)?.length, 2);
});

test('command-line mistakes exit 2 with a reason', T, () => {
  const noApp = spawnSync(node, ['dist/cli.js', 'enclave', '--config-dir', '/nonexistent'], {
    encoding: 'utf8',
  });
  assert.equal(noApp.status, 2);
  assert.match(noApp.stderr, /the app to run is required after `--`/);
  const stray = spawnSync(node, ['dist/cli.js', 'enclave', '--config-dir', '/x', 'app', '--', 'y'], {
    encoding: 'utf8',
  });
  assert.equal(stray.status, 2);
  assert.match(stray.stderr, /unexpected argument 'app'/);
});

test(
  'with api.metrics_port set, the app sees /healthz ok and the app gauge at 1 while it runs',
  T,
  async (t) => {
    const nsmState = join('/tmp', `cloister-sup-nsm-metrics-${process.pid}`);
    t.after(() => spawnSync('rm', ['-rf', nsmState]));
    const enclave = startEnclave(t, {
      app: [
        'sh',
        '-c',
        'curl -sS -w " http=%{http_code}\\n" http://127.0.0.1:9100/healthz; curl -sS http://127.0.0.1:9100/metrics | grep "^cloister_app_up"',
      ],
      settings: 'api:\n  metrics_port: 9100\n',
      noBootstrap: false,
      flags: ['--nsm', 'software', '--nsm-state', nsmState],
    });
    const status = await readStatus(t, enclave);
    const logs = await readLogs(t, enclave);
    assert.deepEqual(await status.waitFor(['exited', 'fatal']), { status: 'exited', code: 0 }, logs.text);
    await logs.waitFor('{"status":"ok","app":"running"}\n http=200');
    await logs.waitFor(/^cloister_app_up 1$/m);
  },
);
