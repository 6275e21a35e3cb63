// CiphertextForRecipient (CMS EnvelopedData) between cloister and an independent implementation:
// test/interop/rust (rasn-cms for the BER/DER, RustCrypto rsa/aes/cbc for OAEP and AES-256-CBC) opens what
// the KMS emulator returns for a Recipient, and cloister's reader (src/kms/cms.ts) opens what it builds.
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  CreateKeyCommand,
  DecryptCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateRandomCommand,
  type RecipientInfo,
} from '@aws-sdk/client-kms';
import { decryptEnvelope, spkiKeyId } from '../../src/kms/cms.ts';
import { startHarness } from '../helpers/kms-harness.ts';
import { runRust, rustProgram } from './toolchains.ts';

const vector = (name: string) => readFileSync(new URL(`../vectors/${name}`, import.meta.url));
const b64 = (b: Uint8Array) => Buffer.from(b).toString('base64');

function rustOpen(cms: Uint8Array, pkcs8: Uint8Array): Buffer {
  const out = runRust(rustProgram(), 'cms-open', { key_pkcs8: b64(pkcs8), cms: b64(cms) }) as {
    plaintext: string;
  };
  return Buffer.from(out.plaintext, 'base64');
}

test('the Rust reader opens the real KMS vector (enclaver) to "Hello, World"', () => {
  const out = rustOpen(
    vector('enclaver_ciphertext_for_recipient.ber'),
    vector('enclaver_recipient_private_key_pkcs8.der'),
  );
  assert.equal(out.toString(), 'Hello, World');
});

test("the emulator's CiphertextForRecipient (Decrypt, GenerateDataKey, GenerateRandom) opens in Rust", async (t) => {
  const h = await startHarness({ egress: false });
  t.after(() => h.close());
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const pkcs8 = privateKey.export({ type: 'pkcs8', format: 'der' });
  const Recipient: RecipientInfo = {
    AttestationDocument: await h.nsm.attestation({ public_key: spki }),
    KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256',
  };
  // Allow everything: this test is about the CMS, not the policy (kms-proxy-go.test.ts tests PCR0 binding).
  const Policy = JSON.stringify({
    Statement: [{ Effect: 'Allow', Principal: { AWS: '*' }, Action: 'kms:*', Resource: '*' }],
  });
  const keyId = (await h.direct.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;
  for (const size of [1, 15, 16, 17, 4096]) {
    const secret = randomBytes(size);
    const enc = await h.direct.send(new EncryptCommand({ KeyId: keyId, Plaintext: secret }));
    const dec = await h.direct.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, Recipient }));
    assert.equal(dec.Plaintext, undefined, 'with a Recipient the plaintext comes back only as CMS');
    assert.deepEqual(rustOpen(dec.CiphertextForRecipient!, pkcs8), secret, `${size}-byte secret`);
  }
  const dk = await h.direct.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256', Recipient }));
  const dataKey = rustOpen(dk.CiphertextForRecipient!, pkcs8);
  assert.equal(dataKey.length, 32);
  const back = await h.direct.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
  assert.deepEqual(Buffer.from(back.Plaintext!), dataKey);
  const rnd = await h.direct.send(new GenerateRandomCommand({ NumberOfBytes: 100, Recipient }));
  assert.equal(rustOpen(rnd.CiphertextForRecipient!, pkcs8).length, 100);
  // Another key cannot open it: the Rust reader checks the rid and fails.
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({
    type: 'pkcs8',
    format: 'der',
  });
  assert.throws(() => rustOpen(rnd.CiphertextForRecipient!, other), /rid is not SHA-256 of our SPKI/);
});

test("cloister's reader opens CMS built by the Rust implementation (DER, any length)", () => {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  for (const size of [0, 1, 15, 16, 17, 1000, 4096]) {
    const secret = randomBytes(size);
    const { cms } = runRust(rustProgram(), 'cms-seal', { spki: b64(spki), plaintext: b64(secret) }) as {
      cms: string;
    };
    const der = Buffer.from(cms, 'base64');
    assert.equal(der[1], 0x82, 'definite length (DER), not the BER KMS sends');
    assert.deepEqual(decryptEnvelope(der, privateKey, spkiKeyId(spki)), secret, `${size}-byte secret`);
    // The Rust reader opens its own output too: cloister and it read the same thing.
    assert.deepEqual(rustOpen(der, privateKey.export({ type: 'pkcs8', format: 'der' })), secret);
  }
});
