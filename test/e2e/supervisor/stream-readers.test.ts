// The host may open any number of connections to the status (17000) and log (17001) streams; cloister
// serves at most `streams.max_readers` on each and closes the rest at once with a logged reason, so a
// host holding hundreds of them cannot use up the supervisor's descriptors and starve the app's local
// services. Real `cloister enclave` with its descriptor limit lowered by prlimit; the app probes the
// attestation API and the egress proxy while the host holds the connections.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CID, readLogs, readStatus, startEnclave, waitUntil } from '../../helpers/supervisor-harness.ts';

const API = 9000;
const EGRESS = 10000;
const HELD = 400; // per stream

const APP = `
import { existsSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
const [go, out] = process.argv.slice(-2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function exchange(port, bytes) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    const done = (why) => { clearTimeout(timer); s.destroy(); resolve(got.split('\\r\\n')[0] || why); };
    const timer = setTimeout(() => done('timeout'), 5000);
    s.on('data', (d) => { got += d.toString('latin1'); if (got.includes('\\r\\n\\r\\n')) done(); });
    s.on('error', (e) => done(e.code));
    s.on('close', () => done('closed'));
    s.write(bytes);
  });
}
while (!existsSync(go)) await sleep(20);
const results = [];
for (let i = 0; i < 20; i++) {
  results.push(await exchange(${API}, 'GET /v1/attestation?nonce=01 HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n'));
  results.push(await exchange(${EGRESS}, 'CONNECT example.org:443 HTTP/1.1\\r\\n\\r\\n'));
}
writeFileSync(out, JSON.stringify(results));
setInterval(() => {}, 1000);
`;

function hold(path: string, n: number): Promise<Socket[]> {
  return Promise.all(
    Array.from(
      { length: n },
      () =>
        new Promise<Socket>((resolve) => {
          const s = connect(path);
          s.on('error', () => {});
          s.once('connect', () => resolve(s));
          s.once('error', () => resolve(s));
        }),
    ),
  );
}

test("hundreds of host connections to the status and log streams never starve the app's local services", {
  timeout: 90_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-readers-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  // The app waits for `go` (written once the host holds its connections), then writes its probes to `out`.
  const go = join(dir, 'go');
  const out = join(dir, 'out');
  const enclave = startEnclave(t, {
    manifest: `version: v1\nname: x\ntarget: x\nsources:\n  app: x\napi:\n  listen_port: ${API}\negress:\n  proxy_port: ${EGRESS}\n  allow:\n    - 127.0.0.1\n`,
    settings: 'nsm:\n  kind: software\nstreams:\n  max_readers: 4\n',
    noBootstrap: false,
    app: [process.execPath, '--input-type=module', '-e', APP, go, out],
  });
  const status = await readStatus(t, enclave);
  const logs = await readLogs(t, enclave);
  await status.waitFor(['running']);
  await logs.waitFor('app started');
  const pid = enclave.proc.pid!;
  const inUse = readdirSync(`/proc/${pid}/fd`).length;
  // Room for the app's probes and little else: what a host holding HELD connections would take.
  const limit = inUse + 40;
  const r = spawnSync('prlimit', ['--pid', String(pid), `--nofile=${limit}:${limit}`]);
  assert.equal(r.status, 0, `prlimit: ${r.stderr}`);
  const held = [
    ...(await hold(join(enclave.vsockDir, String(CID), '17001.sock'), HELD)),
    ...(await hold(join(enclave.vsockDir, String(CID), '17000.sock'), HELD)),
  ];
  t.after(() => {
    for (const s of held) s.destroy();
  });
  await new Promise((r) => setTimeout(r, 500));
  writeFileSync(go, '');
  await waitUntil('the app probes', () => (existsSync(out) ? true : undefined), 60_000);
  const results = JSON.parse(readFileSync(out, 'utf8')) as string[];
  const api = results.filter((_, i) => i % 2 === 0);
  const egress = results.filter((_, i) => i % 2 === 1);
  assert.deepEqual(new Set(api), new Set(['HTTP/1.1 200 OK']), `attestation API: ${api.join(', ')}`);
  assert.deepEqual(
    new Set(egress),
    new Set(['HTTP/1.1 403 Forbidden']),
    `egress proxy: ${egress.join(', ')}`,
  );
  // The refusals are logged (at a bounded rate), naming the setting.
  const text = await logs.waitFor(/too many readers of the log stream[^\n]*streams\.max_readers/);
  assert.match(text, /too many readers of the status stream[^\n]*streams\.max_readers/);
  assert.ok(
    (text.match(/too many readers/g) ?? []).length < 20,
    'every refusal got its own log line: the host could flood the log it reads',
  );
  assert.equal(enclave.proc.exitCode, null);
  assert.doesNotMatch(text, /uncaught exception|unhandled rejection/);
});
