// The enclave side as a real process in its own network namespace (`unshare -n`: only loopback, the
// way out is the emulated vsock directory), with real clients inside it:
//   [netns: client -> proxy] -> unix "vsock" -> relay (this process, or its own netns) -> local server
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { startEgressRelay } from '../../../src/egress/relay.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import {
  makeCert,
  quietLogger,
  startEchoHttp,
  startHttps,
  startTcp,
  tempDir,
} from '../../helpers/egress-fixture.ts';
import { writeBlocks } from '../../helpers/fixtures/bulk.ts';

const FIXTURES = join(import.meta.dirname, '../../helpers/fixtures');

function runEnclave(
  vsockDir: string,
  egress: object,
  client: string[],
  stdin?: Buffer,
  timeoutMs = 60_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      'unshare',
      [
        '-n',
        process.execPath,
        '--import',
        'tsx',
        join(FIXTURES, 'egress-enclave.ts'),
        vsockDir,
        JSON.stringify(egress),
        '--',
        ...client,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    );
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => {
      stdout += d;
    });
    child.stderr.on('data', (d) => {
      stderr += d;
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`enclave process timed out; stderr: ${stderr}`));
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
    child.stdin.end(stdin ?? '');
  });
}

async function hostRelay(t: import('node:test').TestContext) {
  const dir = tempDir(t, 'cloister-vsock-');
  const relay = await startEgressRelay(
    {},
    { transport: new EmulatedTransport(dir, 2), logger: quietLogger() },
  );
  t.after(() => relay.close());
  return dir;
}

test('netns: curl and python inside the namespace reach local servers only through the proxy', async (t) => {
  const cert = makeCert(t);
  const https = await startHttps(t, cert, 'from the namespace');
  const http = await startEchoHttp(t);
  const dir = await hostRelay(t);
  // NO_PROXY keeps 127.0.0.1 for the enclave's own services; the parent is reached as `host`.
  const egress = { allow: ['host'] };
  // Without the proxy the namespace has no route to this server (its 127.0.0.1 is its own).
  const direct = await runEnclave(dir, egress, [
    'curl',
    '-sS',
    '--noproxy',
    '*',
    '--max-time',
    '5',
    `http://127.0.0.1:${http}/`,
  ]);
  assert.notEqual(direct.code, 0);
  const viaCurl = await runEnclave(dir, egress, [
    'curl',
    '-sS',
    '--max-time',
    '10',
    '--cacert',
    cert.certPath,
    `https://host:${https}/curl`,
  ]);
  assert.equal(viaCurl.stdout, 'from the namespace GET /curl', viaCurl.stderr);
  const py = await runEnclave(dir, egress, [
    'python3',
    '-c',
    `import urllib.request,json;print(json.loads(urllib.request.urlopen("http://host:${http}/py",timeout=10).read())["url"])`,
  ]);
  assert.equal(py.stdout.trim(), '/py', py.stderr);
  const denied = await runEnclave(dir, egress, [
    'curl',
    '-s',
    '-o',
    '/dev/null',
    '-w',
    '%{http_code}',
    '--max-time',
    '10',
    'http://example.com/',
  ]);
  assert.equal(denied.stdout, '403');
});

test('netns: a dial the policy lets through to a non-loopback address fails inside a relay namespace (502)', async (t) => {
  const dir = tempDir(t, 'cloister-vsock-');
  const relay = spawn(
    'unshare',
    ['-n', process.execPath, '--import', 'tsx', join(FIXTURES, 'egress-relay.ts'), dir],
    {
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  t.after(() => relay.kill('SIGTERM'));
  await new Promise((resolve, reject) => {
    relay.stdout.once('data', resolve);
    relay.once('exit', reject);
  });
  const r = await runEnclave(dir, { allow: ['10.0.0.0/8'] }, [
    'curl',
    '-s',
    '--max-time',
    '10',
    '-w',
    '\n%{http_code}',
    'http://10.1.2.3:8080/',
  ]);
  assert.match(r.stdout, /\n502$/);
  assert.match(r.stdout, /os_err: 101: Network is unreachable/);
});

test('netns: 1 GiB up and 1 GiB down through the full path with matching checksums', async (t) => {
  const MIB = 1024;
  const block = randomBytes(1024 * 1024);
  const expected = createHash('sha256');
  for (let i = 0; i < MIB; i++) expected.update(block);
  const want = expected.digest('hex');
  // Upload sink answers the hash of what it got after the client's FIN; download source sends 1 GiB.
  const sink = await startTcp(t, (s) => {
    const h = createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.on('end', () => s.end(h.digest('hex')));
  });
  const source = await startTcp(t, (s) => {
    s.resume();
    writeBlocks(s, block, MIB);
  });
  const dir = await hostRelay(t);
  const client = [process.execPath, '--import', 'tsx', join(FIXTURES, 'egress-bulk-client.ts')];
  const up = await runEnclave(
    dir,
    { allow: ['127.0.0.1'] },
    [...client, 'up', `127.0.0.1:${sink}`, String(MIB)],
    block,
  );
  assert.equal(up.stdout.trim(), want, up.stderr);
  const down = await runEnclave(
    dir,
    { allow: ['127.0.0.1'] },
    [...client, 'down', `127.0.0.1:${source}`],
    block,
  );
  assert.equal(down.stdout.trim(), `${want} ${MIB * 1024 * 1024}`, down.stderr);
});

const CLI = join(import.meta.dirname, '../../..', 'dist', 'cli.js');

test('netns: `cloister enclave` (the real supervisor) gives its app a working egress proxy', {}, async (t) => {
  const cert = makeCert(t);
  const https = await startHttps(t, cert, 'via the supervisor');
  const vsockDir = await hostRelay(t);
  const configDir = tempDir(t, 'cloister-config-');
  writeFileSync(
    join(configDir, 'enclaver.yaml'),
    'version: v1\nname: egress-test\ntarget: t:latest\nsources:\n  app: a:latest\negress:\n  allow:\n    - host\n',
  );
  // --no-bootstrap leaves lo down; the app brings it up itself, then uses the proxy variables.
  const app = `ip link set lo up && curl -sS --max-time 10 --cacert ${cert.certPath} https://host:${https}/sup; echo; echo APP-$((1+1))-DONE`;
  const child = spawn(
    'unshare',
    [
      '-n',
      process.execPath,
      CLI,
      'enclave',
      '--config-dir',
      configDir,
      '--transport',
      'emulated',
      '--vsock-dir',
      vsockDir,
      '--cid',
      '16',
      '--no-bootstrap',
      '--',
      'sh',
      '-c',
      app,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  child.stderr.resume();
  const done = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 30_000);
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('APP-2-DONE')) {
        clearTimeout(timer);
        resolve(true);
      }
    });
  });
  child.kill('SIGTERM'); // cloister stays up after its app, like odyn
  assert.ok(done, out);
  assert.match(out, /via the supervisor GET \/sup/);
});
