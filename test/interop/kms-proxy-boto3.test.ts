// boto3 and botocore from PyPI (pinned in test/interop/python/requirements.txt, installed in a cached
// virtual environment) as the app of a real `cloister enclave`, through the KMS proxy to a real
// `cloister kms-emulator`: Decrypt, GenerateDataKey, GenerateRandom; refused for another PCR0.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { EncryptCommand } from '@aws-sdk/client-kms';
import { startKmsHost } from '../helpers/enclave-kms-host.ts';
import { INTEROP_DIR, pythonVenv } from './toolchains.ts';

const PCR0 = 'c3'.repeat(48);
const pinned = (name: string) =>
  readFileSync(join(INTEROP_DIR, 'python', 'requirements.txt'), 'utf8').match(
    new RegExp(`^${name}==(\\S+)$`, 'm'),
  )![1];

test('boto3 from PyPI in `cloister enclave`: Decrypt, GenerateDataKey, GenerateRandom; another PCR0 is refused', {
  timeout: 600_000,
}, async (t) => {
  const python = pythonVenv();
  const host = await startKmsHost(t);
  const keyId = await host.createPcr0Key(PCR0);
  const secret = `boto3 ${randomBytes(6).toString('hex')}`;
  const enc = await host.kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from(secret) }));
  const app = [
    python,
    join(INTEROP_DIR, 'python', 'kms_app.py'),
    keyId,
    Buffer.from(enc.CiphertextBlob!).toString('base64'),
  ];

  const ok = await host.runApp(t, PCR0, app);
  assert.equal(ok.error, null, ok.enclave.err().slice(-3000));
  assert.deepEqual(ok.result, {
    boto3: pinned('boto3'),
    botocore: pinned('botocore'),
    endpoint: 'http://127.0.0.1:9999',
    plaintext: secret,
    data_key_bytes: 32,
    data_key_matches: true,
    random_bytes: 64,
    recipient_leaked: false,
  });

  const denied = await host.runApp(t, 'd4'.repeat(48), app);
  assert.match(
    denied.error!,
    /^An error occurred \(AccessDeniedException\) when calling the Decrypt operation: User: .* is not authorized to perform: kms:Decrypt/,
  );
});
