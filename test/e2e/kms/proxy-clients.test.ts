// The KMS proxy end to end with real clients:
//   client -> KMS proxy -> egress proxy -> emulated vsock -> egress relay -> KMS emulator (127.0.0.1)
// The aws CLI v2, boto3 and @aws-sdk/client-kms each run encrypt, decrypt, generate-data-key,
// generate-data-key-pair and generate-random through it with throwaway credentials.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import {
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateDataKeyPairCommand,
  GenerateRandomCommand,
  ListKeysCommand,
  PutKeyPolicyCommand,
} from '@aws-sdk/client-kms';
import { decryptEnvelope } from '../../../src/kms/cms.ts';
import { clientEnv, type Harness, PCR0, REGION, startHarness } from '../../helpers/kms-harness.ts';
import { findTool } from '../../helpers/tools.ts';

const run = promisify(execFile);

/** The private key a GenerateDataKeyPair returned must be the pair of its public key. */
function assertKeyPair(privateDer: Buffer, publicDer: Buffer): void {
  const priv = createPrivateKey({ key: privateDer, format: 'der', type: 'pkcs8' });
  assert.deepEqual(createPublicKey(priv).export({ type: 'spki', format: 'der' }), publicDer);
}

describe('KMS proxy through the egress path', () => {
  let h: Harness;
  let keyId: string;

  before(async () => {
    h = await startHarness();
    keyId = (await h.direct.send(new CreateKeyCommand({ Description: 'proxy test' }))).KeyMetadata!.KeyId!;
  });
  after(() => h?.close());

  test('@aws-sdk/client-kms: the five operations give correct results', async () => {
    const enc = await h.viaProxy.send(
      new EncryptCommand({
        KeyId: keyId,
        Plaintext: Buffer.from('sdk secret'),
        EncryptionContext: { k: 'v' },
      }),
    );
    const dec = await h.viaProxy.send(
      new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: { k: 'v' } }),
    );
    assert.equal(Buffer.from(dec.Plaintext!).toString(), 'sdk secret');
    assert.equal(dec.KeyId, `arn:aws:kms:${REGION}:111122223333:key/${keyId}`);
    assert.equal(dec.CiphertextForRecipient, undefined);

    const dk = await h.viaProxy.send(new GenerateDataKeyCommand({ KeyId: keyId, KeySpec: 'AES_256' }));
    assert.equal(dk.Plaintext!.length, 32);
    const dkDirect = await h.direct.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
    assert.deepEqual(Buffer.from(dk.Plaintext!), Buffer.from(dkDirect.Plaintext!));

    const pair = await h.viaProxy.send(
      new GenerateDataKeyPairCommand({ KeyId: keyId, KeyPairSpec: 'RSA_2048' }),
    );
    assertKeyPair(Buffer.from(pair.PrivateKeyPlaintext!), Buffer.from(pair.PublicKey!));
    const pairDirect = await h.direct.send(
      new DecryptCommand({ CiphertextBlob: pair.PrivateKeyCiphertextBlob }),
    );
    assert.deepEqual(Buffer.from(pairDirect.Plaintext!), Buffer.from(pair.PrivateKeyPlaintext!));

    const a = await h.viaProxy.send(new GenerateRandomCommand({ NumberOfBytes: 48 }));
    const b = await h.viaProxy.send(new GenerateRandomCommand({ NumberOfBytes: 48 }));
    assert.equal(a.Plaintext!.length, 48);
    assert.notDeepEqual(a.Plaintext, b.Plaintext);
  });

  test('aws CLI v2: encrypt, decrypt, generate-data-key, generate-data-key-pair, generate-random', async () => {
    const env = clientEnv(h.dir);
    const aws = async (...args: string[]) =>
      JSON.parse(
        (
          await run(findTool('awsV2'), ['--endpoint-url', h.proxyUrl, '--output', 'json', 'kms', ...args], {
            env,
            timeout: 30_000,
          })
        ).stdout,
      );
    const plainFile = join(h.dir, 'cli-plain.txt');
    writeFileSync(plainFile, 'cli secret');
    const enc = await aws('encrypt', '--key-id', keyId, '--plaintext', `fileb://${plainFile}`);
    const ctFile = join(h.dir, 'cli-ct.bin');
    writeFileSync(ctFile, Buffer.from(enc.CiphertextBlob, 'base64'));
    const dec = await aws('decrypt', '--ciphertext-blob', `fileb://${ctFile}`);
    assert.equal(Buffer.from(dec.Plaintext, 'base64').toString(), 'cli secret');
    const dk = await aws('generate-data-key', '--key-id', keyId, '--key-spec', 'AES_256');
    const dkDirect = await h.direct.send(
      new DecryptCommand({ CiphertextBlob: Buffer.from(dk.CiphertextBlob, 'base64') }),
    );
    assert.deepEqual(Buffer.from(dk.Plaintext, 'base64'), Buffer.from(dkDirect.Plaintext!));
    const pair = await aws('generate-data-key-pair', '--key-id', keyId, '--key-pair-spec', 'ECC_NIST_P384');
    assertKeyPair(Buffer.from(pair.PrivateKeyPlaintext, 'base64'), Buffer.from(pair.PublicKey, 'base64'));
    const rnd = await aws('generate-random', '--number-of-bytes', '24');
    assert.equal(Buffer.from(rnd.Plaintext, 'base64').length, 24);
  });

  test('boto3: encrypt, decrypt, generate_data_key, generate_data_key_pair, generate_random', async () => {
    const script = `
import base64, json, sys, boto3
kms = boto3.client('kms', endpoint_url=sys.argv[1], region_name='${REGION}')
key = sys.argv[2]
enc = kms.encrypt(KeyId=key, Plaintext=b'boto secret', EncryptionContext={'app': 'boto'})
dec = kms.decrypt(CiphertextBlob=enc['CiphertextBlob'], EncryptionContext={'app': 'boto'})
dk = kms.generate_data_key(KeyId=key, KeySpec='AES_128')
pair = kms.generate_data_key_pair(KeyId=key, KeyPairSpec='RSA_2048')
rnd = kms.generate_random(NumberOfBytes=32)
b64 = lambda b: base64.b64encode(b).decode()
print(json.dumps({'dec': b64(dec['Plaintext']), 'dk': b64(dk['Plaintext']), 'dkct': b64(dk['CiphertextBlob']),
  'priv': b64(pair['PrivateKeyPlaintext']), 'pub': b64(pair['PublicKey']), 'rnd': b64(rnd['Plaintext'])}))
`;
    const { stdout } = await run(findTool('python3Boto3'), ['-c', script, h.proxyUrl, keyId], {
      env: clientEnv(h.dir),
      timeout: 30_000,
    });
    const out = JSON.parse(stdout);
    assert.equal(Buffer.from(out.dec, 'base64').toString(), 'boto secret');
    const dkDirect = await h.direct.send(
      new DecryptCommand({ CiphertextBlob: Buffer.from(out.dkct, 'base64') }),
    );
    assert.deepEqual(Buffer.from(out.dk, 'base64'), Buffer.from(dkDirect.Plaintext!));
    assert.equal(Buffer.from(out.dk, 'base64').length, 16);
    assertKeyPair(Buffer.from(out.priv, 'base64'), Buffer.from(out.pub, 'base64'));
    assert.equal(Buffer.from(out.rnd, 'base64').length, 32);
  });

  test("Vault's awskms seal calls: DescribeKey, Encrypt, then Decrypt with only CiphertextBlob", async () => {
    const described = await h.viaProxy.send(new DescribeKeyCommand({ KeyId: keyId }));
    const arn = described.KeyMetadata!.Arn!;
    const enc = await h.viaProxy.send(
      new EncryptCommand({ KeyId: arn, Plaintext: Buffer.from('vault root key material') }),
    );
    const dec = await h.viaProxy.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    assert.equal(Buffer.from(dec.Plaintext!).toString(), 'vault root key material');
    assert.equal(dec.KeyId, arn);
  });

  test('a key whose policy names another PCR0 refuses Decrypt; the right PCR0 unlocks it only through the proxy', async () => {
    const key = (await h.direct.send(new CreateKeyCommand({}))).KeyMetadata!;
    const policyFor = (pcr0: string) =>
      JSON.stringify({
        Version: '2012-10-17',
        Statement: [
          {
            Sid: 'Admin',
            Effect: 'Allow',
            Principal: { AWS: '*' },
            Action: ['kms:Encrypt', 'kms:DescribeKey', 'kms:PutKeyPolicy', 'kms:GetKeyPolicy'],
            Resource: '*',
          },
          {
            Sid: 'EnclaveOnly',
            Effect: 'Allow',
            Principal: { AWS: '*' },
            Action: 'kms:Decrypt',
            Resource: '*',
            Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:ImageSha384': pcr0 } },
          },
        ],
      });
    await h.direct.send(
      new PutKeyPolicyCommand({
        KeyId: key.KeyId,
        PolicyName: 'default',
        Policy: policyFor('0f'.repeat(48)),
      }),
    );
    const enc = await h.viaProxy.send(
      new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from('enclave only') }),
    );
    await assert.rejects(
      h.viaProxy.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })),
      (err: Error & { $metadata?: { httpStatusCode?: number } }) => {
        assert.equal(err.name, 'AccessDeniedException');
        assert.equal(err.$metadata?.httpStatusCode, 400);
        assert.match(err.message, /is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:/);
        return true;
      },
    );
    // The right image (upper-case hex: the condition ignores case).
    await h.direct.send(
      new PutKeyPolicyCommand({
        KeyId: key.KeyId,
        PolicyName: 'default',
        Policy: policyFor(PCR0.toUpperCase()),
      }),
    );
    const dec = await h.viaProxy.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    assert.equal(Buffer.from(dec.Plaintext!).toString(), 'enclave only');
    // Without the proxy there is no attestation document, so the condition cannot hold.
    await assert.rejects(h.direct.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })), {
      name: 'AccessDeniedException',
    });
  });

  test("an app that sends its own Recipient gets KMS's answer untouched", async () => {
    const enc = await h.viaProxy.send(
      new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('for the app itself') }),
    );
    const mine = generateKeyPairSync('rsa', { modulusLength: 2048 });
    const doc = await h.nsm.attestation({
      public_key: mine.publicKey.export({ type: 'spki', format: 'der' }),
    });
    const out = await h.viaProxy.send(
      new DecryptCommand({
        CiphertextBlob: enc.CiphertextBlob,
        Recipient: { AttestationDocument: doc, KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' },
      }),
    );
    assert.equal(out.Plaintext, undefined);
    assert.equal(
      decryptEnvelope(out.CiphertextForRecipient!, mine.privateKey).toString(),
      'for the app itself',
    );
  });

  test('concurrent attested calls all succeed', async () => {
    const enc = await h.viaProxy.send(
      new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('parallel') }),
    );
    const results = await Promise.all(
      Array.from({ length: 24 }, () =>
        h.viaProxy.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })),
      ),
    );
    for (const r of results) assert.equal(Buffer.from(r.Plaintext!).toString(), 'parallel');
  });

  test('ListKeys and other actions are forwarded and re-signed', async () => {
    const listed = await h.viaProxy.send(new ListKeysCommand({}));
    assert.ok(listed.Keys!.some((k) => k.KeyId === keyId));
  });
});
