// A host that stops accepting on the egress port (vsock 17002) must not stall the rest of the enclave
// (issue 10). The real `cloister enclave` runs with the vsock transport under two LD_PRELOAD shims
// (test/helpers/native/): vsock_shim.c turns its vsock listeners into Unix sockets in a test directory
// and keeps the first 50 connects to 17002 in progress for ever (a relay that never accepts), while
// later ones complete to a real egress relay this test runs; nsm_shim.c answers the /dev/nsm ioctls with
// an attestation document. 50 CONNECTs are opened through the egress proxy and left hanging; then the
// attestation API (an NSM ioctl, on libuv's thread pool) and the KMS proxy (a ListKeys forwarded to a
// KMS emulator, through its own new egress tunnel) are called. Both must answer while every one of the
// 50 CONNECTs is still unanswered, which cannot happen when a stalled connect holds a pool thread
// (the addon-level test is test/unit/transport/vsock-connect.test.ts; the real-kernel one is the lab's
// egress-relay-never-accepts scenario).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { KMSClient, ListKeysCommand } from '@aws-sdk/client-kms';
import { startEgressRelay } from '../../../src/egress/relay.ts';
import { startKmsEmulator } from '../../../src/kms-emulator/server.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { encodeResponse } from '../../../src/nsm/codec.ts';
import { terminate } from '../../../src/terminate.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { CID_HOST, EGRESS_VSOCK_PORT, STATUS_PORT } from '../../../src/transport/types.ts';
import { DIST_CLI } from '../../helpers/build-outputs.ts';
import { freePort } from '../../helpers/fixtures/ports.ts';
import { buildShims } from '../../helpers/native/shims.ts';
import { waitUntil } from '../../helpers/supervisor-harness.ts';

const TUNNELS = 50;
const REGION = 'us-east-1';
const CREDS = { accessKeyId: 'AKIDPOOLTEST', secretAccessKey: 'pool-test-secret' };

test('a relay that never accepts: 50 stalled egress tunnels, and the attestation API and KMS proxy still answer', {
  timeout: 90_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-pool-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const preload = buildShims(dir);
  const logger = createLogger({ level: 'silent' });

  // Host side, in this process: the relay the 51st and later connects reach, and the KMS emulator.
  const vsockDir = join(dir, 'vsock');
  const relay = await startEgressRelay({}, { transport: new EmulatedTransport(vsockDir, CID_HOST), logger });
  t.after(() => relay.close());
  const emulator = await startKmsEmulator({
    stateDir: join(dir, 'kms'),
    credentials: [CREDS],
    region: REGION,
    logger,
  });
  t.after(() => emulator.close());

  const [apiPort, kmsPort, egressPort] = [await freePort(), await freePort(), await freePort()];
  const conf = join(dir, 'conf');
  const bindDir = join(dir, 'vsock-listeners');
  mkdirSync(conf);
  mkdirSync(bindDir);
  writeFileSync(
    join(conf, 'enclaver.yaml'),
    [
      'version: v1',
      'name: pool-test',
      'target: pool-test:latest',
      'sources:',
      '  app: app:latest',
      'egress:',
      `  proxy_port: ${egressPort}`,
      '  allow: [127.0.0.1]',
      'kms_proxy:',
      `  listen_port: ${kmsPort}`,
      `  endpoints: { ${REGION}: "${emulator.url}" }`,
      'api:',
      `  listen_port: ${apiPort}`,
      '',
    ].join('\n'),
  );
  // Long enough that no stalled tunnel is given up on before the calls below have had every chance.
  writeFileSync(join(conf, 'cloister.yaml'), 'egress:\n  connect_timeout_ms: 8000\n');
  const document = Buffer.from('an attestation document from the NSM shim');
  const record = join(dir, 'stalled.txt');
  const enclave = spawn(
    process.execPath,
    [
      DIST_CLI,
      'enclave',
      '--config-dir',
      conf,
      '--transport',
      'vsock',
      // VMADDR_CID_LOCAL: even without the shim, nothing would leave the machine.
      '--parent-cid',
      '1',
      '--nsm',
      'device',
      '--no-bootstrap',
      '--no-console',
      '--',
      'sleep',
      '300',
    ],
    {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: {
        ...process.env,
        LD_PRELOAD: preload,
        UV_THREADPOOL_SIZE: '4',
        VSOCK_SHIM_BIND_DIR: bindDir,
        VSOCK_SHIM_UNIX: join(vsockDir, String(CID_HOST), `${EGRESS_VSOCK_PORT}.sock`),
        VSOCK_SHIM_UNIX_PORT: String(EGRESS_VSOCK_PORT),
        VSOCK_SHIM_STALL_FIRST: String(TUNNELS),
        VSOCK_SHIM_RECORD: record,
        NSM_SHIM_REPLY: encodeResponse({ type: 'Attestation', document }).toString('hex'),
        AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_REGION: REGION,
      },
    },
  );
  let stderr = '';
  enclave.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = once(enclave, 'exit');
  t.after(() => terminate({ signal: (sig) => enclave.kill(sig), exited }, { graceMs: 5000 }));

  // The status stream (vsock 17000, a Unix socket through the shim) says when the app runs.
  const statusPath = join(bindDir, `${STATUS_PORT}.sock`);
  // The socket file appears at bind(), a moment before listen(): retry a refused connect.
  let status: Socket | undefined;
  for (let tries = 0; !status; tries++) {
    const s = connect(statusPath);
    const [event] = await Promise.race([once(s, 'connect').then(() => ['connect']), once(s, 'error')]);
    if (event === 'connect') status = s;
    else if (tries > 200) assert.fail(`the status port never accepted (stderr: ${stderr})`);
    else await new Promise((r) => setTimeout(r, 50));
  }
  let statusText = '';
  status.on('data', (d: Buffer) => {
    statusText += d.toString();
  });
  t.after(() => status.destroy());
  await waitUntil(
    `the app running (stderr: ${stderr})`,
    () => (statusText.includes('"running"') ? true : undefined),
    20_000,
  );

  // Every event in the order it happened.
  const events: string[] = [];
  const tunnels: Socket[] = [];
  const answers: Promise<string>[] = [];
  for (let i = 0; i < TUNNELS; i++) {
    const s = connect(egressPort, '127.0.0.1');
    tunnels.push(s);
    s.write('CONNECT 127.0.0.1:9 HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\r\n');
    answers.push(
      new Promise((resolve) => {
        let head = '';
        let answered = false;
        s.on('data', (d: Buffer) => {
          head += d.toString('latin1');
          if (!answered && head.includes('\r\n')) {
            answered = true;
            events.push('tunnel answered');
          }
        });
        s.on('error', () => {});
        // The proxy closes the connection after its answer: the whole answer is in.
        s.on('close', () => resolve(head));
      }),
    );
  }
  t.after(() => {
    for (const s of tunnels) s.destroy();
  });
  // All 50 are in the proxy, each with its vsock connect in progress.
  const stalled = () => (existsSync(record) ? readFileSync(record, 'utf8').split('\n').length - 1 : 0);
  await waitUntil(`${TUNNELS} stalled connects`, () => (stalled() === TUNNELS ? true : undefined), 20_000);
  events.push(`${TUNNELS} connects stalled`);

  const api = fetch(`http://127.0.0.1:${apiPort}/v1/attestation?nonce=01`).then(async (r) => {
    const body = Buffer.from(await r.arrayBuffer());
    events.push('attestation API answered');
    return { status: r.status, body };
  });
  const kms = new KMSClient({
    region: REGION,
    endpoint: `http://127.0.0.1:${kmsPort}`,
    credentials: { accessKeyId: 'anything', secretAccessKey: 'anything' },
    maxAttempts: 1,
  });
  t.after(() => kms.destroy());
  const listed = kms.send(new ListKeysCommand({})).then((r) => {
    events.push('KMS proxy answered');
    return r;
  });

  const attestation = await api;
  assert.equal(attestation.status, 200);
  assert.deepEqual(attestation.body, document, 'the document the NSM ioctl returned');
  assert.deepEqual((await listed).Keys, []);
  const heads = await Promise.all(answers);
  // Only now are the stalled tunnels given up on, each at egress.connect_timeout_ms: a 504, whichever
  // of the proxy's deadline and the vsock connect's own timer (the same length) fires first.
  const timedOut = (h: string) => h.startsWith('HTTP/1.1 504 ');
  assert.deepEqual(
    heads.filter((h) => !timedOut(h)),
    [],
    'every stalled tunnel ends by its connect timeout, with an answer',
  );
  assert.equal(stalled(), TUNNELS, 'only the first 50 connects stalled; the KMS proxy got through');

  // The order is the point: both answered while all 50 tunnels were still waiting.
  const firstTunnel = events.indexOf('tunnel answered');
  assert.deepEqual(events.slice(0, firstTunnel).sort(), [
    `${TUNNELS} connects stalled`,
    'KMS proxy answered',
    'attestation API answered',
  ]);
  assert.doesNotMatch(stderr, /uncaught exception|unhandled rejection/);
});
