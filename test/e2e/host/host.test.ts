// `cloister host` end to end: a fake nitro-cli (test/fixtures/fake-nitro-cli.sh) starts the real
// `cloister enclave` inside `unshare -n` over the emulated transport; `cloister host` relays, forwards
// ingress, prints the enclave's logs and exits with the app's code.
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { type TestContext, test } from 'node:test';
import { promisify } from 'node:util';
import { DIST_CLI } from '../../helpers/build-outputs.ts';
import {
  alive,
  type Captured,
  spawnCloister,
  waitFor as waitForChild,
} from '../../helpers/fixtures/child.ts';
import { freePort } from '../../helpers/fixtures/ports.ts';
import { tempDir } from '../../helpers/fixtures/temp-dir.ts';

const run = promisify(execFile);
const FAKE = resolve('test/helpers/fixtures/fake-nitro-cli.sh');

const APP = `
import { createServer } from 'node:http';
const port = Number(process.argv[2]);
console.log('hello from inside the enclave');
console.log('long:' + 'x'.repeat(10000) + ':end');
createServer((req, res) => {
  const u = new URL(req.url, 'http://x');
  if (u.pathname === '/exit') { res.end('bye'); setTimeout(() => process.exit(Number(u.searchParams.get('code'))), 50); return; }
  if (u.pathname === '/kill') { res.end('dying'); setTimeout(() => process.kill(process.pid, 'SIGKILL'), 50); return; }
  res.end('pong from the app');
}).listen(port, '127.0.0.1', () => console.log('app listening'));
`;

interface Setup extends Captured {
  host: ChildProcess;
  hostPort: number;
  state: string;
}

async function startHost(t: TestContext, extra: string[] = []): Promise<Setup> {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-host-'));
  const appPort = await freePort();
  const hostPort = await freePort();
  const cfg = join(dir, 'config');
  const state = join(dir, 'state');
  mkdirSync(cfg);
  mkdirSync(state);
  writeFileSync(
    join(cfg, 'enclaver.yaml'),
    `version: v1\nname: host-test\ntarget: host-test:latest\nsources:\n  app: app:latest\ningress:\n  - listen_port: ${appPort}\negress:\n  allow:\n    - 127.0.0.1\n`,
  );
  writeFileSync(join(dir, 'app.mjs'), APP);
  const eif = join(dir, 'application.eif');
  writeFileSync(eif, [cfg, process.execPath, join(dir, 'app.mjs'), String(appPort)].join('\n'));
  const s = spawnCloister(
    t,
    [
      'host',
      '-f',
      join(cfg, 'enclaver.yaml'),
      '--eif',
      eif,
      '--cpu-count',
      '2',
      '--memory',
      '512',
      '--nitro-cli',
      FAKE,
      '--transport',
      'emulated',
      '--vsock-dir',
      join(dir, 'vsock'),
      '--listen-address',
      '127.0.0.1',
      '-p',
      `${hostPort}:${appPort}`,
      ...extra,
    ],
    {
      env: {
        ...process.env,
        FAKE_NITRO_STATE: state,
        FAKE_NITRO_NODE: process.execPath,
        FAKE_NITRO_CLOISTER: DIST_CLI,
        FAKE_NITRO_VSOCK_DIR: join(dir, 'vsock'),
      },
    },
  );
  t.after(async () => {
    await s.stop();
    // Whatever happened, no fake enclave may outlive the test.
    for (const f of readdirSync(state).filter((n) => n.endsWith('.pid'))) {
      try {
        process.kill(-Number(readFileSync(join(state, f), 'utf8')), 'SIGKILL');
      } catch {}
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return { ...s, host: s.child, hostPort, state };
}

const waitFor = (what: string, cond: () => boolean, s: Setup) => waitForChild(s, what, cond, 30_000);

const opts = { timeout: 60_000 };

test(
  'cloister host: logs shown whole, ingress works, the app exit code is the exit code',
  opts,
  async (t) => {
    const s = await startHost(t);
    await waitFor('app listening', () => s.out().includes('app listening'), s);
    const { stdout } = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${s.hostPort}/ping`]);
    assert.equal(stdout, 'pong from the app');
    await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${s.hostPort}/exit?code=7`]);
    assert.equal(await s.exited, 7);
    assert.match(s.out(), /hello from inside the enclave/);
    assert.ok(s.out().includes(`long:${'x'.repeat(10000)}:end\n`), 'a 10 kB line arrives whole');
    assert.match(s.err(), /started enclave ID=i-0fake/);
    assert.equal(
      readdirSync(s.state).filter((n) => n.endsWith('.terminated')).length,
      1,
      'terminate-enclave ran',
    );
    // It exited because everything closed (src/exit.ts names any handle still open 2 s after).
    assert.doesNotMatch(s.err(), /still open after shutdown/);
  },
);

test('cloister host --debug-mode: passes the flag and shows the enclave console', opts, async (t) => {
  const s = await startHost(t, ['--debug-mode']);
  await waitFor('console lines', () => /\[console\] .*app listening/.test(s.err()), s);
  const argsFile = readdirSync(s.state).find((n) => n.endsWith('.args'))!;
  assert.equal(readFileSync(join(s.state, argsFile), 'utf8').trim(), '2 512 true');
  await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${s.hostPort}/exit?code=0`]);
  assert.equal(await s.exited, 0);
});

test('cloister host: an app killed by a signal gives 107', opts, async (t) => {
  const s = await startHost(t);
  await waitFor('app listening', () => s.out().includes('app listening'), s);
  await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${s.hostPort}/kill`]);
  assert.equal(await s.exited, 107);
  assert.match(s.err(), /killed by SIGKILL/);
});

test('cloister host: SIGTERM terminates the enclave and exits 109', opts, async (t) => {
  const s = await startHost(t);
  await waitFor('app listening', () => s.out().includes('app listening'), s);
  const pidFile = readdirSync(s.state).find((n) => n.endsWith('.pid'))!;
  const enclavePid = Number(readFileSync(join(s.state, pidFile), 'utf8'));
  assert.ok(alive(enclavePid));
  s.host.kill('SIGTERM');
  assert.equal(await s.exited, 109);
  assert.ok(existsSync(join(s.state, pidFile.replace('.pid', '.terminated'))), 'terminate-enclave ran');
  assert.equal(alive(enclavePid), false, 'the enclave process is gone');
  // The ingress listener is gone too.
  await assert.rejects(run('curl', ['-sS', '--max-time', '5', `http://127.0.0.1:${s.hostPort}/`]));
  assert.doesNotMatch(s.err(), /still open after shutdown/);
});

test('cloister host --attach-cid: a host side restarts while the enclave keeps running', opts, async (t) => {
  const dir = tempDir(t, 'cloister-attach-');
  const manifest = join(dir, 'enclaver.yaml');
  writeFileSync(manifest, 'version: v1\nname: attach\ntarget: attach:latest\nsources:\n  app: app:latest\n');
  const vsock = ['--transport', 'emulated', '--vsock-dir', join(dir, 'vsock')];
  const go = join(dir, 'go');
  const enclave = spawnCloister(t, [
    ...['enclave', '-f', manifest, ...vsock, '--cid', '16', '--no-bootstrap', '--'],
    ...['/bin/sh', '-c', `echo attached-app-up; while [ ! -f ${go} ]; do sleep 0.1; done; echo bye; exit 5`],
  ]);
  const attach = () => spawnCloister(t, ['host', '-f', manifest, '--attach-cid', '16', ...vsock]);

  const first = attach();
  await waitForChild(first, 'the app output', () => first.out().includes('attached-app-up'), 30_000);
  await first.stop();
  assert.equal(await first.exited, 109, 'interrupted');
  assert.ok(enclave.child.exitCode === null && alive(enclave.child.pid!), 'the enclave was left running');

  const second = attach();
  await waitForChild(second, 'the log replay', () => second.out().includes('attached-app-up'), 30_000);
  writeFileSync(go, '');
  assert.equal(await second.exited, 5, second.err());
  assert.match(second.out(), /bye/);
  assert.ok(enclave.child.exitCode === null && alive(enclave.child.pid!), 'nothing terminated the enclave');

  const bad = spawnSync(process.execPath, [
    DIST_CLI,
    'host',
    '-f',
    manifest,
    '--attach-cid',
    '16',
    '--eif',
    'x.eif',
  ]);
  assert.equal(bad.status, 2);
  assert.match(bad.stderr.toString(), /--attach-cid launches nothing: --eif does not apply/);
});
