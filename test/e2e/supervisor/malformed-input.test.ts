// Every server of a real `cloister enclave` gets the malformed inputs that reach a throwing parser
// (URL, JSON, base64/hex, BigInt) or a protocol edge, from where an outsider sends them: the app's
// side (attestation API, metrics, egress proxy, KMS proxy on 127.0.0.1) and the host's side (status,
// log, ingress and metrics over vsock). Each must answer 4xx or drop that connection, the supervisor
// must log no uncaught exception, and every server must still answer a good request afterwards.
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { encodeProxyV2, PPV2_SIGNATURE } from '../../../src/ingress/proxy-protocol.ts';
import { seededRandom } from '../../helpers/seeded-random.ts';
import { CID, readLogs, readStatus, startEnclave } from '../../helpers/supervisor-harness.ts';

const API = 9000;
const METRICS = 9100;
const EGRESS = 10000;
const KMS = 9999;
const INGRESS = 8080;

// [server, port, raw request]: each must get a 4xx status line (never 5xx, never silence).
const APP_SIDE: [string, number, string][] = [
  ['metrics', METRICS, 'GET // HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['metrics', METRICS, 'GET //a:99999/ HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['metrics', METRICS, 'GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['metrics', METRICS, 'GET /%zz HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['api', API, 'GET // HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['api', API, 'GET //a:99999/v1/attestation HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['api', API, 'GET /v1/attestation?nonce=zz HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['api', API, 'GET /v1/attestation?nonce=%zz&user_data=%E0%A4%A HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['api', API, 'POST /v1/attestation HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n{'],
  ['api', API, 'POST /v1/attestation HTTP/1.1\r\nHost: x\r\nContent-Length: 15\r\n\r\n{"nonce":"%%%"}'],
  ['api', API, 'POST /v1/attestation HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n{"public_key":"AAAA"}'],
  ['egress', EGRESS, 'GET http://[::1/ HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['egress', EGRESS, 'GET http://%zz/ HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['egress', EGRESS, 'CONNECT [::1 HTTP/1.1\r\n\r\n'],
  ['egress', EGRESS, 'CONNECT 1.2.3.4:99999999999999999999 HTTP/1.1\r\n\r\n'],
  ['egress', EGRESS, 'GET / HTTP/1.1\r\nHost: x\r\n\r\n'],
  ['kms', KMS, 'POST // HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}'],
  ['kms', KMS, 'POST //a:99999/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}'],
  [
    'kms',
    KMS,
    'POST / HTTP/1.1\r\nHost: x\r\nX-Amz-Target: TrentService.Decrypt\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: 1\r\n\r\n{',
  ],
];

// What each server answers once the malformed inputs are through: proof it still serves.
const GOOD: [string, number, string, number][] = [
  ['metrics', METRICS, 'GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 200],
  ['api', API, 'GET /v1/attestation?nonce=01 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 200],
  ['egress', EGRESS, 'CONNECT example.org:443 HTTP/1.1\r\n\r\n', 403],
];

/** The app: sends every case from inside the enclave's network namespace and prints what came back. */
const APP = `
import { connect, createServer } from 'node:net';
const [cases, good] = process.argv.slice(-2).map((a) => JSON.parse(a));
function exchange(port, bytes) {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let out = '';
    const done = () => { clearTimeout(timer); s.destroy(); resolve(out.split('\\r\\n')[0]); };
    const timer = setTimeout(done, 5000);
    s.on('data', (d) => { out += d.toString('latin1'); if (out.includes('\\r\\n\\r\\n')) setTimeout(done, 50); });
    s.on('error', done);
    s.on('close', done);
    s.write(bytes);
  });
}
// The ingress port's app: answers each connection with what it received.
// The header and the client's bytes may come in separate reads: answer once 100 ms pass without more.
createServer((s) => {
  let got = Buffer.alloc(0);
  let timer;
  s.on('data', (d) => {
    got = Buffer.concat([got, d]);
    clearTimeout(timer);
    timer = setTimeout(() => s.end('app got ' + got.length + ' bytes: ' + got.toString('latin1').slice(-5)), 100);
  });
}).listen(${INGRESS}, '127.0.0.1');
const results = [];
for (const [name, port, bytes] of cases) results.push([name, bytes.split('\\r\\n')[0], await exchange(port, bytes)]);
const after = [];
for (const [name, port, bytes] of good) after.push([name, await exchange(port, bytes)]);
console.log('RESULT ' + JSON.stringify({ results, after }));
setInterval(() => {}, 1000);
`;

function vsock(dir: string, port: number): string {
  return join(dir, String(CID), `${port}.sock`);
}

/** Sends raw bytes to an emulated vsock port of the enclave; resolves with what came back. */
function exchangeVsock(path: string, bytes: Buffer | string, waitMs = 3000): Promise<string> {
  return new Promise((resolve) => {
    const s: Socket = connect(path);
    const chunks: Buffer[] = [];
    const done = () => {
      clearTimeout(timer);
      s.destroy();
      resolve(Buffer.concat(chunks).toString('latin1'));
    };
    const timer = setTimeout(done, waitMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', done);
    s.on('close', done);
    s.write(bytes);
  });
}

test('malformed input to every server of `cloister enclave`: 4xx or a dropped connection, never an uncaught exception', {
  timeout: 90_000,
}, async (t) => {
  const enclave = startEnclave(t, {
    manifest: `version: v1
name: x
target: x
sources:
  app: x
api:
  listen_port: ${API}
egress:
  proxy_port: ${EGRESS}
  allow:
    - 127.0.0.1
kms_proxy:
  listen_port: ${KMS}
  endpoints:
    us-east-1: http://127.0.0.1:1
ingress:
  - listen_port: ${INGRESS}
`,
    settings: `nsm:\n  kind: software\napi:\n  metrics_port: ${METRICS}\ningress:\n  proxy_protocol: true\n  upstream_retry_ms: 5000\nkms:\n  ready_wait_ms: 100\n`,
    noBootstrap: false,
    env: {
      AWS_ACCESS_KEY_ID: 'AKIDEXAMPLE',
      AWS_SECRET_ACCESS_KEY: 'secret',
      AWS_EC2_METADATA_DISABLED: 'true',
    },
    app: [process.execPath, '--input-type=module', '-e', APP, JSON.stringify(APP_SIDE), JSON.stringify(GOOD)],
  });
  const status = await readStatus(t, enclave);
  const logs = await readLogs(t, enclave);
  await status.waitFor(['running']);
  const line = await logs.waitFor(/RESULT .*\n/, 60_000).catch((e: Error) => {
    throw new Error(`${e.message}\n${logs.text.slice(-6000)}\n${enclave.stderr()}`);
  });
  const { results, after } = JSON.parse(/RESULT (.*)\n/.exec(line)![1]!) as {
    results: [string, string, string][];
    after: [string, string][];
  };
  const not4xx = results.filter(([, , reply]) => !/^HTTP\/1\.1 4\d\d /.test(reply));
  assert.deepEqual(not4xx, [], 'each malformed request gets a 4xx');
  for (const [i, [name, reply]] of after.entries())
    assert.match(reply, new RegExp(`^HTTP/1\\.1 ${GOOD[i]![3]} `), `${name} after the malformed inputs`);

  // The host's side: metrics over vsock, the status and log ports, and ingress with PROXY v2 headers.
  const metrics = vsock(enclave.vsockDir, METRICS);
  for (const target of ['//', '//a:99999/', 'http://[::1/'])
    assert.match(
      await exchangeVsock(metrics, `GET ${target} HTTP/1.1\r\nHost: x\r\n\r\n`),
      /^HTTP\/1\.1 400 /,
      target,
    );
  const garbage = seededRandom(t).bytes(4096);
  for (const port of [17000, 17001]) await exchangeVsock(vsock(enclave.vsockDir, port), garbage, 300);
  const ingress = vsock(enclave.vsockDir, INGRESS);
  const header = encodeProxyV2(
    { address: '203.0.113.7', port: 4000 },
    { address: '10.0.0.1', port: INGRESS },
  );
  const badHeaders: Buffer[] = [
    Buffer.from('GET / HTTP/1.1\r\n\r\n'),
    Buffer.concat([PPV2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]),
    Buffer.concat([PPV2_SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4])]),
    Buffer.concat([PPV2_SIGNATURE, Buffer.from([0x2f, 0x99, 0x00, 0x00])]),
    // A TLV whose length runs past the end of the header.
    Buffer.concat([
      header.subarray(0, 14),
      Buffer.from([0x00, 0x10]),
      header.subarray(16),
      Buffer.from([0x20, 0xff, 0xff, 0x01]),
    ]),
    garbage,
  ];
  for (const bad of badHeaders)
    assert.equal(await exchangeVsock(ingress, bad, 1000), '', bad.toString('hex'));
  assert.match(
    await exchangeVsock(ingress, Buffer.concat([header, Buffer.from('hello')])),
    /^app got 33 bytes: hello$/,
  );
  assert.match(
    await exchangeVsock(metrics, 'GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'),
    /^HTTP\/1\.1 200 /,
  );

  // Still serving status, and nothing escaped to the process's last-resort handlers.
  const again = await readStatus(t, enclave);
  await again.waitFor(['running']);
  assert.doesNotMatch(logs.text, /uncaught exception|unhandled rejection/, logs.text.slice(-4000));
  assert.equal(enclave.proc.exitCode, null);
});
