// The whole promise with real processes: an unmodified boto3 app runs under `cloister enclave` inside its
// own network namespace (`unshare -n`: only the emulated vsock leads out) and reaches a `cloister
// kms-emulator` process on the host side through the KMS proxy, the egress proxy and the egress relay.
// The key's policy allows Decrypt only to the enclave's PCR0, and the app decrypts with dummy credentials.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CreateKeyCommand, DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { startEgressRelay } from '../../../src/egress/relay.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { loadOrCreateRoot } from '../../../src/nsm/software.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { CID_HOST } from '../../../src/transport/types.ts';
import { exitWithin, spawnCloister } from '../../helpers/fixtures/child.ts';
import { findTool } from '../../helpers/tools.ts';

const PCR0 = '5e'.repeat(48);
const CREDS = { accessKeyId: 'AKIDENCLAVEPROXY', secretAccessKey: 'enclave-proxy-secret' };
const canUnshare = spawnSync('unshare', ['-n', 'true']).status === 0;

function waitForLine(
  child: ChildProcess,
  stream: 'stdout' | 'stderr',
  re: RegExp,
  ms: number,
): Promise<string> {
  return new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(
      () => reject(new Error(`timed out waiting for ${re}; got:\n${buf.slice(-3000)}`)),
      ms,
    );
    child[stream]!.on('data', (c: Buffer) => {
      buf += c.toString();
      const m = buf.split('\n').find((l) => re.test(l));
      if (m) {
        clearTimeout(timer);
        resolve(m);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`process exited (${code}) before ${re}:\n${buf.slice(-3000)}`));
    });
  });
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(t);
}

test('boto3 in `cloister enclave` (unshare -n) decrypts a PCR0-bound key through the proxy', {
  skip: !canUnshare && 'needs unshare -n (root)',
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kms-enclave-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const nsmState = join(dir, 'nsm');
  await loadOrCreateRoot(nsmState);
  const vsockDir = join(dir, 'vsock');

  // Host side: the KMS emulator (a real process) and the egress relay.
  const emu = spawn(
    process.execPath,
    [
      'dist/cli.js',
      'kms-emulator',
      '--listen',
      '127.0.0.1:0',
      '--state-dir',
      join(dir, 'kms'),
      '--attestation-root',
      join(nsmState, 'root.pem'),
      '--access-key',
      CREDS.accessKeyId,
      '--secret-key',
      CREDS.secretAccessKey,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, CLOISTER_LOG_LEVEL: 'warn' } },
  );
  t.after(() => stop(emu));
  const emuUrl = (await waitForLine(emu, 'stdout', /^http:\/\//, 15_000)).trim();
  const relay = await startEgressRelay({
    transport: new EmulatedTransport(vsockDir, CID_HOST),
    logger: createLogger({ level: 'silent' }),
  });
  t.after(() => relay.close());

  const kms = new KMSClient({ region: 'us-east-1', endpoint: emuUrl, credentials: CREDS, maxAttempts: 1 });
  t.after(() => kms.destroy());
  const policy = JSON.stringify({
    Statement: [
      { Effect: 'Allow', Principal: { AWS: '*' }, Action: ['kms:Encrypt', 'kms:DescribeKey'], Resource: '*' },
      {
        Effect: 'Allow',
        Principal: { AWS: '*' },
        Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
        Resource: '*',
        Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:PCR0': PCR0 } },
      },
    ],
  });
  const key = (await kms.send(new CreateKeyCommand({ Policy: policy }))).KeyMetadata!;
  const enc = await kms.send(
    new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('sealed for one image') }),
  );
  await assert.rejects(kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })), {
    name: 'AccessDeniedException',
  });

  // Enclave side: manifest, settings, and an unmodified boto3 app that reads AWS_ENDPOINT_URL_KMS.
  const config = join(dir, 'config');
  spawnSync('mkdir', ['-p', config]);
  writeFileSync(
    join(config, 'enclaver.yaml'),
    `version: v1
name: kms-enclave-test
target: kms-enclave-test:latest
sources:
  app: app:latest
egress:
  proxy_port: 10000
  allow:
    - 127.0.0.1
kms_proxy:
  listen_port: 9999
  endpoints:
    us-east-1: ${emuUrl}
`,
  );
  writeFileSync(
    join(config, 'cloister.yaml'),
    `transport:
  kind: emulated
  dir: ${vsockDir}
nsm:
  kind: software
  state_dir: ${nsmState}
  pcrs:
    "0": "${PCR0}"
`,
  );
  writeFileSync(
    join(dir, 'app.py'),
    `import base64, json, os, sys, boto3
kms = boto3.client('kms', endpoint_url=os.environ['AWS_ENDPOINT_URL_KMS'], region_name='us-east-1',
                   aws_access_key_id='dummy', aws_secret_access_key='dummy')
blob = base64.b64decode(sys.argv[1])
out = {'endpoint': os.environ['AWS_KMS_ENDPOINT']}
out['plaintext'] = kms.decrypt(CiphertextBlob=blob)['Plaintext'].decode()
out['dk'] = len(kms.generate_data_key(KeyId=sys.argv[2], KeySpec='AES_256')['Plaintext'])
print('RESULT ' + json.dumps(out), flush=True)
`,
  );
  const enclave = spawn(
    'unshare',
    [
      '-n',
      process.execPath,
      'dist/cli.js',
      'enclave',
      '--config-dir',
      config,
      '--no-console',
      '--',
      findTool('python3Boto3'),
      join(dir, 'app.py'),
      Buffer.from(enc.CiphertextBlob!).toString('base64'),
      key.KeyId!,
    ],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
        AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: 'true',
      },
    },
  );
  t.after(() => stop(enclave));
  let stderr = '';
  enclave.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const line = await waitForLine(enclave, 'stdout', /^RESULT /, 40_000).catch((err: Error) => {
    throw new Error(`${err.message}\nstderr:\n${stderr.slice(-4000)}`);
  });
  const out = JSON.parse(line.slice('RESULT '.length));
  assert.deepEqual(out, { endpoint: 'http://127.0.0.1:9999', plaintext: 'sealed for one image', dk: 32 });
  assert.ok(!stderr.includes('sealed for one image'), 'the plaintext reached a log line');
  assert.ok(readFileSync(join(nsmState, 'root.pem'), 'utf8').includes('BEGIN CERTIFICATE'));
});

test('`cloister dev`: the aws CLI and boto3 in the emulated enclave use the proxy and the emulator', {
  skip: !canUnshare && 'needs unshare -n (root)',
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kms-dev-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'enclaver.yaml'),
    'version: v1\nname: kms-dev\ntarget: kms-dev:latest\nsources:\n  app: app:latest\negress:\n  allow:\n    - kms.*.amazonaws.com\nkms_proxy:\n  listen_port: 9999\n',
  );
  writeFileSync(
    join(dir, 'app.py'),
    `import os, boto3
kms = boto3.client('kms', endpoint_url=os.environ['AWS_ENDPOINT_URL_KMS'], region_name='us-east-1',
                   aws_access_key_id='dummy', aws_secret_access_key='dummy')
key = kms.create_key()['KeyMetadata']['KeyId']
blob = kms.encrypt(KeyId=key, Plaintext=b'dev mode secret')['CiphertextBlob']
print('BOTO ' + kms.decrypt(CiphertextBlob=blob)['Plaintext'].decode(), flush=True)
`,
  );
  const app = `${findTool('python3Boto3')} ${join(dir, 'app.py')} && ${findTool('awsV2')} --endpoint-url "$AWS_KMS_ENDPOINT" --region us-east-1 kms generate-random --number-of-bytes 24 --output text --query Plaintext | sed 's/^/CLI /'`;
  const dev = spawnCloister(
    t,
    ['dev', '-f', join(dir, 'enclaver.yaml'), '--state-dir', join(dir, 'state'), '--', '/bin/sh', '-c', app],
    {
      env: {
        PATH: process.env.PATH,
        HOME: dir,
        AWS_CONFIG_FILE: join(dir, 'none'),
        AWS_SHARED_CREDENTIALS_FILE: join(dir, 'none'),
        AWS_ACCESS_KEY_ID: 'dummy',
        AWS_SECRET_ACCESS_KEY: 'dummy',
      },
    },
  );
  const code = await exitWithin(dev, 45_000);
  const stdout = dev.out();
  const stderr = dev.err();
  assert.equal(code, 0, `${stdout}\n${stderr.slice(-3000)}`);
  assert.match(stdout, /^BOTO dev mode secret$/m);
  const cli = /^CLI (\S+)$/m.exec(stdout);
  assert.ok(cli, stdout);
  assert.equal(Buffer.from(cli[1]!, 'base64').length, 24);
});
