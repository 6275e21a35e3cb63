// Vault's own seal code and the AWS SDK for Go v2 through cloister: test/interop/go (pinned in go.mod)
// runs as the app of a real `cloister enclave` (own network namespace) whose KMS proxy reaches a real
// `cloister kms-emulator` through egress and the relay. The key is bound to one PCR0.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { EncryptCommand } from '@aws-sdk/client-kms';
import { startKmsHost } from '../helpers/enclave-kms-host.ts';
import { goProgram } from './toolchains.ts';

const PCR0 = 'a7'.repeat(48);
const OTHER_PCR0 = 'b8'.repeat(48);

test('Vault awskms seal wrapper seals and unseals through cloister; another PCR0 cannot unseal', {
  timeout: 600_000,
}, async (t) => {
  const go = goProgram();
  const host = await startKmsHost(t);
  const keyId = await host.createPcr0Key(PCR0);

  // Vault init: SetConfig (DescribeKey), Encrypt a fresh seal key, Decrypt it back.
  const init = await host.runApp(t, PCR0, [go, 'seal', keyId]);
  assert.equal(init.error, null, init.enclave.err().slice(-3000));
  const sealed = init.result!;
  assert.equal(sealed.roundtrip, true);
  assert.deepEqual(sealed.metadata, {
    region: 'us-east-1',
    key_id: keyId,
    endpoint: 'http://127.0.0.1:9999',
  });
  assert.match(String(sealed.wrapper_keyid), new RegExp(keyId));

  // A restart of the same image: the wrapper unseals the stored blob.
  const restart = await host.runApp(t, PCR0, [go, 'unseal', keyId, String(sealed.blob)]);
  assert.equal(restart.error, null, restart.enclave.err().slice(-3000));
  assert.equal(restart.result!.key_sha256, sealed.key_sha256);

  // Another image (another PCR0) with the same blob: Decrypt is refused, and this is the text Vault logs.
  const other = await host.runApp(t, OTHER_PCR0, [go, 'unseal', keyId, String(sealed.blob)]);
  assert.equal(other.result, null, 'a different PCR0 unsealed the key');
  assert.match(
    other.error!,
    /^error decrypting data encryption key: AccessDeniedException: User: .* is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:us-east-1:\d+:key\/[-0-9a-f]+ because no resource-based policy allows the kms:Decrypt action/,
  );
  assert.ok(!other.enclave.err().includes(String(sealed.key_sha256)));
});

test('AWS SDK for Go v2: Decrypt, GenerateDataKey, GenerateRandom through cloister', {
  timeout: 600_000,
}, async (t) => {
  const go = goProgram();
  const host = await startKmsHost(t);
  const keyId = await host.createPcr0Key(PCR0);
  const secret = `go sdk ${randomBytes(6).toString('hex')}`;
  const enc = await host.kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from(secret) }));
  const blob = Buffer.from(enc.CiphertextBlob!).toString('base64');

  const ok = await host.runApp(t, PCR0, [go, 'sdk', keyId, blob]);
  assert.equal(ok.error, null, ok.enclave.err().slice(-3000));
  assert.deepEqual(ok.result, {
    plaintext: secret,
    decrypt_key_id: enc.KeyId,
    data_key_bytes: 32,
    data_key_matches: true,
    random_bytes: 48,
    recipient_leaked: false,
  });
  assert.ok(!ok.enclave.err().includes(secret), 'the plaintext reached a log line');

  const denied = await host.runApp(t, OTHER_PCR0, [go, 'sdk', keyId, blob]);
  assert.match(
    denied.error!,
    /operation error KMS: Decrypt, https response error StatusCode: 400.*AccessDeniedException/,
  );
});
