// `cloister dev`: both sides on this machine, real processes. The enclave side runs in its own network
// namespace (--isolate, the default as root); these tests only ever talk to loopback.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { formatReport, lintPolicy } from '../../../src/key-policy/lint.ts';
import { DIST_CLI } from '../../helpers/build-outputs.ts';
import { alive, type Captured, spawnCloister, waitFor } from '../../helpers/fixtures/child.ts';
import { tempDir } from '../../helpers/fixtures/temp-dir.ts';
import { writeSelfSigned } from '../../helpers/fixtures/tls.ts';

const opts = { timeout: 40_000 };

interface DevSetup {
  dir: string;
  manifest: string;
  state: string;
  /** `cloister dev -f <manifest> --state-dir <state> <args>` */
  dev(args: string[]): Captured;
}

function setup(t: TestContext, manifestExtra = ''): DevSetup {
  const dir = tempDir(t, 'cloister-dev-');
  const manifest = join(dir, 'enclaver.yaml');
  writeFileSync(
    manifest,
    `version: v1\nname: dev-test\ntarget: dev-test:latest\nsources:\n  app: app:latest\n${manifestExtra}`,
  );
  const state = join(dir, 'state');
  return {
    dir,
    manifest,
    state,
    dev: (args) => spawnCloister(t, ['dev', '-f', manifest, '--state-dir', state, ...args]),
  };
}

test('cloister dev: exits with the app exit code and leaves nothing behind', opts, async (t) => {
  const { state, dev } = setup(t);
  const d = dev(['--', 'sh', '-c', 'echo "from the app: $$"; exit 5']);
  assert.equal(await d.exited, 5, d.err());
  assert.match(d.out(), /from the app: \d+/);
  assert.match(d.err(), /PCR0\s+[0-9a-f]{96}/);
  assert.match(d.err(), /kms:RecipientAttestation:PCR0/);
  // The key policy it prints for the dev PCR0 is one `cloister kms policy --lint` accepts.
  const policy = /key policy\s+(\{.*\})$/m.exec(d.err())?.[1];
  assert.ok(policy, d.err());
  const report = lintPolicy(policy);
  assert.equal(report.ok, true, formatReport('the dev key policy', report));
  assert.ok(existsSync(join(state, 'nsm', 'root.pem')), 'the software NSM root is kept in the state dir');
  assert.deepEqual(
    readdirSync(state).filter((n) => n.startsWith('run-')),
    [],
    'the per-run scratch dir is removed',
  );
  // It exited because everything closed (src/exit.ts names any handle still open 2 s after).
  assert.doesNotMatch(d.err(), /still open after shutdown/);
});

test(
  'cloister dev --isolate: the app cannot reach the host network except through the proxy',
  opts,
  async (t) => {
    const { dev } = setup(t);
    const server = createServer((s) => s.end('you reached the host'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    t.after(() => server.close());
    const port = (server.address() as { port: number }).port;
    const probe = `const s=require('net').connect(${port},'127.0.0.1');s.on('data',()=>process.exit(0));s.on('error',e=>{console.log('blocked: '+e.code);process.exit(3)})`;
    const d = dev(['--', process.execPath, '-e', probe]);
    assert.equal(await d.exited, 3, d.out() + d.err());
    assert.match(d.out(), /blocked: ECONNREFUSED/);
    // The same probe with --no-isolate reaches it: the test really distinguishes the two.
    const open = dev(['--no-isolate', '--', process.execPath, '-e', probe]);
    assert.equal(await open.exited, 0, open.out() + open.err());
  },
);

test('cloister dev: Ctrl-C (SIGINT) stops the app and everything else, exit 109', opts, async (t) => {
  const { dir, state, dev } = setup(t, 'ingress:\n  - listen_port: 18234\n');
  const pidFile = join(dir, 'app.pid');
  const d = dev(['-p', '0:18234', '--', 'sh', '-c', `echo $$ > ${pidFile}; echo started; exec sleep 300`]);
  await waitFor(d, 'the app to start', () => d.out().includes('started'));
  const appPid = Number(readFileSync(pidFile, 'utf8'));
  assert.ok(alive(appPid));
  d.child.kill('SIGINT');
  assert.equal(await d.exited, 109, d.err());
  assert.equal(alive(appPid), false, 'the app was stopped');
  assert.deepEqual(
    readdirSync(state).filter((n) => n.startsWith('run-')),
    [],
  );
  assert.doesNotMatch(d.err(), /still open after shutdown/);
});

test(
  'cloister dev: waits while the restart policy restarts the app, then exits with its code',
  opts,
  async (t) => {
    const { dir, dev } = setup(t);
    writeFileSync(
      join(dir, 'cloister.yaml'),
      'app:\n  restart: on-failure\n  max_restarts: 2\n  restart_backoff_ms: 10\n  restart_backoff_max_ms: 20\n',
    );
    const d = dev(['--', 'sh', '-c', 'echo "app run"; exit 4']);
    assert.equal(await d.exited, 4, d.err());
    assert.equal(d.out().match(/app run/g)?.length, 3, d.out());
  },
);

test(
  "cloister dev: a TLS ingress port works with the manifest's relative key/cert paths",
  opts,
  async (t) => {
    const { dir, dev } = setup(
      t,
      'ingress:\n  - listen_port: 18443\n    tls:\n      key_file: certs/key.pem\n      cert_file: certs/cert.pem\n',
    );
    mkdirSync(join(dir, 'certs'));
    const cert = join(dir, 'certs/cert.pem');
    writeSelfSigned(join(dir, 'certs/key.pem'), cert);
    const app = `require('http').createServer((q,r)=>{r.end('tls ok');setTimeout(()=>process.exit(0),50)}).listen(18443,'127.0.0.1',()=>console.log('up'))`;
    const d = dev(['-p', '0:18443', '--', process.execPath, '-e', app]);
    let url: string | undefined;
    await waitFor(d, 'the app and its ingress port', () => {
      url = /ingress\s+http:\/\/127\.0\.0\.1:(\d+) -> enclave port 18443/.exec(d.err())?.[1];
      return url !== undefined && d.out().includes('up');
    });
    const r = spawnSync('curl', ['-sS', '--max-time', '10', '--cacert', cert, `https://localhost:${url}/`], {
      encoding: 'utf8',
    });
    assert.equal(r.stdout, 'tls ok', r.stderr);
    assert.equal(await d.exited, 0, d.err());
  },
);

test('cloister dev: usage errors exit 2 and say why', async () => {
  const r = spawnSync(process.execPath, [DIST_CLI, 'dev', '-f', 'examples/hello/enclaver.yaml'], {
    encoding: 'utf8',
  });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /the app to run is required after `--`/);
});
