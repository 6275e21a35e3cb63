// CiphertextForRecipient: real KMS-shaped vectors (BER, indefinite lengths, both encryptedContent
// encodings), the proxy's decryption, and the emulator's builder checked against OpenSSL.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CmsError, decryptEnvelope, parseEnvelope, spkiKeyId } from '../../../src/kms/cms.ts';
import { buildEnvelope } from '../../../src/kms-emulator/recipient.ts';

const V = join(import.meta.dirname, '../../vectors');
const vector = (name: string) => readFileSync(join(V, name));
const enclaverKey = () => createPrivateKey(vector('enclaver_recipient_private_key.pem'));

test('the real enclaver CiphertextForRecipient decrypts to "Hello, World" with its key', () => {
  const key = enclaverKey();
  const spki = createPublicKey(key).export({ type: 'spki', format: 'der' });
  const plain = decryptEnvelope(vector('enclaver_ciphertext_for_recipient.ber'), key, spkiKeyId(spki));
  assert.equal(plain.toString('latin1'), 'Hello, World');
});

test('the PKCS#8 DER form of the key decrypts the same vector', () => {
  const key = createPrivateKey({
    key: vector('enclaver_recipient_private_key_pkcs8.der'),
    format: 'der',
    type: 'pkcs8',
  });
  assert.equal(
    decryptEnvelope(vector('enclaver_ciphertext_for_recipient.ber'), key).toString(),
    'Hello, World',
  );
});

test('every real vector parses, including the primitive encryptedContent encoding', () => {
  const expect: Record<string, { rid: string; iv: string; contentLength: number }> = {
    'enclaver_ciphertext_for_recipient.ber': {
      rid: 'fb09e9af2940ddcf0d2bbf6358c983af46fc5fdcedbca251d54ceab4d069cd89',
      iv: '2c2ff1116ae6f8573fd58fd44f980624',
      contentLength: 16,
    },
    'sdkc_cms_test_input_ber.ber': {
      rid: '7087b55df94ba3255cdf3c01840a2aa3ec93620625d601cf56f97bde7a3d2eb1',
      iv: '688c6d5f7f31b0fecedf09f2e7c99ac9',
      contentLength: 48,
    },
    'sdkc_cms_test_input_ber_w_ctx.ber': {
      rid: '4e61df69e443b8e25c8ae83318cfc72d9b6a5176d2167790fdf819c086e6967a',
      iv: 'e66c1172aee0f2f7be34e3afc6b0e4fe',
      contentLength: 16,
    },
    'ned_readme_ciphertext_for_recipient.ber': {
      rid: 'a5281703e7f074991fdabdc30b83edc8c3a131eecafb5ed21c15f9c7fc1a23f9',
      iv: '5aab36bcfa098ce7cde7ea47f3f51957',
      contentLength: 32,
    },
  };
  for (const [file, want] of Object.entries(expect)) {
    const env = parseEnvelope(vector(file));
    assert.equal(env.subjectKeyIdentifier?.toString('hex'), want.rid, file);
    assert.equal(env.iv.toString('hex'), want.iv, file);
    assert.equal(env.encryptedContent.length, want.contentLength, file);
    assert.equal(env.encryptedKey.length, 256, file);
  }
});

test('a vector addressed to another key is refused, and a wrong key gives one uniform error', () => {
  const other = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const otherId = spkiKeyId(other.publicKey.export({ type: 'spki', format: 'der' }));
  assert.throws(
    () => decryptEnvelope(vector('enclaver_ciphertext_for_recipient.ber'), enclaverKey(), otherId),
    /addressed to another key/,
  );
  assert.throws(
    () => decryptEnvelope(vector('enclaver_ciphertext_for_recipient.ber'), other.privateKey),
    (err: Error) => err instanceof CmsError && err.message === 'CiphertextForRecipient: decryption failed',
  );
});

test('malformed input is a CmsError, never a crash', () => {
  const good = vector('enclaver_ciphertext_for_recipient.ber');
  const cases: Buffer[] = [
    Buffer.alloc(0),
    Buffer.from('not ber at all'),
    good.subarray(0, 100),
    Buffer.concat([good, Buffer.from([0x05, 0x00])]),
    vector('aws_nitro_enclaves_root_g1.pem'),
  ];
  // Flip one byte at every 7th position: each result must be a CmsError or (rarely) still parse.
  for (let i = 0; i < good.length; i += 7) {
    const b = Buffer.from(good);
    b[i] = b[i]! ^ 0xff;
    cases.push(b);
  }
  for (const c of cases) {
    try {
      decryptEnvelope(c, enclaverKey());
    } catch (err) {
      assert.ok(err instanceof CmsError, `unexpected ${(err as Error).name}: ${(err as Error).message}`);
    }
  }
  assert.throws(() => decryptEnvelope(Buffer.alloc(0), enclaverKey()), CmsError);
});

test("the emulator's envelope has KMS's shape and OpenSSL decrypts it", (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-cms-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const secret = Buffer.from('a secret of thirty-three bytes...');
  const ber = buildEnvelope(secret, spki);
  // 30 80 06 09 <envelopedData> a0 80 30 80 02 01 02 31 82: indefinite outer lengths, version 2.
  assert.equal(ber.subarray(0, 22).toString('hex'), '308006092a864886f70d010703a08030800201023182');
  assert.equal(ber.subarray(-4).toString('hex'), '00000000');
  const env = parseEnvelope(ber);
  assert.deepEqual(env.subjectKeyIdentifier, spkiKeyId(spki));
  assert.deepEqual(decryptEnvelope(ber, privateKey, spkiKeyId(spki)), secret);
  writeFileSync(join(dir, 'cfr.ber'), ber);
  writeFileSync(join(dir, 'key.pem'), privateKey.export({ type: 'pkcs8', format: 'pem' }));
  const out = execFileSync('openssl', [
    'cms',
    '-decrypt',
    '-inform',
    'DER',
    '-in',
    join(dir, 'cfr.ber'),
    '-inkey',
    join(dir, 'key.pem'),
  ]);
  assert.deepEqual(out, secret);
});

test('a CiphertextForRecipient with a malformed BER time is a CmsError, like any other bad input', () => {
  for (const b of [
    [0x18, 0x01, 0x41],
    [0x30, 0x03, 0x18, 0x01, 0x41],
  ]) {
    assert.throws(() => parseEnvelope(Buffer.from(b)), CmsError);
  }
});
