// The whole promise with real processes: an unmodified boto3 app runs under `cloister enclave` inside its
// own network namespace (`unshare -n`: only the emulated vsock leads out) and reaches a `cloister
// kms-emulator` process on the host side through the KMS proxy, the egress proxy and the egress relay.
// The key's policy allows Decrypt only to the enclave's PCR0, and the app decrypts with dummy credentials.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { startKmsHost } from '../../helpers/enclave-kms-host.ts';
import { exitWithin, spawnCloister } from '../../helpers/fixtures/child.ts';
import { findTool } from '../../helpers/tools.ts';

const PCR0 = '5e'.repeat(48);

test('boto3 in `cloister enclave` (unshare -n) decrypts a PCR0-bound key through the proxy', {}, async (t) => {
  // Host side: a `cloister kms-emulator` process and the egress relay (test/helpers/enclave-kms-host.ts).
  const host = await startKmsHost(t);
  const keyId = await host.createPcr0Key(PCR0);
  const enc = await host.kms.send(
    new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('sealed for one image') }),
  );
  await assert.rejects(host.kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })), {
    name: 'AccessDeniedException',
  });

  // Enclave side: an unmodified boto3 app that reads AWS_ENDPOINT_URL_KMS.
  const appPy = join(host.dir, 'app.py');
  writeFileSync(
    appPy,
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
  const run = await host.runApp(t, PCR0, [
    findTool('python3Boto3'),
    appPy,
    Buffer.from(enc.CiphertextBlob!).toString('base64'),
    keyId,
  ]);
  assert.deepEqual(
    run.result,
    { endpoint: 'http://127.0.0.1:9999', plaintext: 'sealed for one image', dk: 32 },
    run.enclave.err().slice(-4000),
  );
  assert.ok(!run.enclave.err().includes('sealed for one image'), 'the plaintext reached a log line');
  assert.ok(readFileSync(join(host.nsmState, 'root.pem'), 'utf8').includes('BEGIN CERTIFICATE'));
});

test('`cloister dev`: the aws CLI and boto3 in the emulated enclave use the proxy and the emulator', {}, async (t) => {
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
