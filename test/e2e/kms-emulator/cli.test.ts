// The KMS emulator as a real process (`cloister kms-emulator`), driven by @aws-sdk/client-kms.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import {
  CreateAliasCommand,
  CreateKeyCommand,
  DecryptCommand,
  DescribeKeyCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
  GenerateDataKeyPairCommand,
  GenerateDataKeyWithoutPlaintextCommand,
  GenerateRandomCommand,
  GetKeyPolicyCommand,
  KMSClient,
  ListAliasesCommand,
  ListKeysCommand,
  PutKeyPolicyCommand,
  ReEncryptCommand,
} from '@aws-sdk/client-kms';
import { decryptEnvelope } from '../../../src/kms/cms.ts';
import { openSoftwareNsm } from '../../../src/nsm/software.ts';

const CREDS = { accessKeyId: 'AKIDEMULATORTEST', secretAccessKey: 'emulator-secret' };
const PCR0 = 'ab'.repeat(48);

interface Running {
  child: ChildProcess;
  url: string;
}

function startEmulator(args: string[]): Promise<Running> {
  const child = spawn(process.execPath, ['dist/cli.js', 'kms-emulator', '--listen', '127.0.0.1:0', ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, CLOISTER_LOG_LEVEL: 'warn' },
  });
  return new Promise((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`emulator did not start: ${err}`));
    }, 15_000);
    child.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
      const line = out.split('\n')[0];
      if (out.includes('\n') && line) {
        clearTimeout(timer);
        resolve({ child, url: line.trim() });
      }
    });
    child.stderr!.on('data', (c: Buffer) => {
      err += c.toString();
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(Object.assign(new Error(`emulator exited with ${code}: ${err}`), { code, stderr: err }));
    });
  });
}

async function stop(r: Running): Promise<void> {
  if (r.child.exitCode !== null) return;
  const exited = new Promise((resolve) => r.child.once('exit', resolve));
  r.child.kill('SIGTERM');
  await exited;
}

function client(url: string, creds = CREDS): KMSClient {
  return new KMSClient({ region: 'us-east-1', endpoint: url, credentials: creds, maxAttempts: 1 });
}

test('kms-emulator: the KMS API with real crypto, persisted across a restart', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kmsemu-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const nsm = await openSoftwareNsm({ stateDir: join(dir, 'nsm'), pcrs: { '0': PCR0 } });
  t.after(() => nsm.close());
  writeFileSync(join(dir, 'root.pem'), nsm.rootPem);
  const args = [
    '--state-dir',
    join(dir, 'state'),
    '--attestation-root',
    join(dir, 'root.pem'),
    '--access-key',
    CREDS.accessKeyId,
    '--secret-key',
    CREDS.secretAccessKey,
  ];
  let emu = await startEmulator(args);
  t.after(() => stop(emu));
  let kms = client(emu.url);

  const created = await kms.send(new CreateKeyCommand({ Description: 'test key' }));
  const meta = created.KeyMetadata!;
  assert.match(meta.KeyId!, /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
  assert.equal(meta.Arn, `arn:aws:kms:us-east-1:111122223333:key/${meta.KeyId}`);
  assert.equal(meta.KeySpec, 'SYMMETRIC_DEFAULT');
  await kms.send(new CreateAliasCommand({ AliasName: 'alias/app', TargetKeyId: meta.KeyId }));
  await assert.rejects(
    kms.send(new CreateAliasCommand({ AliasName: 'alias/app', TargetKeyId: meta.KeyId })),
    {
      name: 'AlreadyExistsException',
    },
  );
  const aliases = await kms.send(new ListAliasesCommand({}));
  assert.deepEqual(
    aliases.Aliases!.map((a) => [a.AliasName, a.TargetKeyId, a.AliasArn]),
    [['alias/app', meta.KeyId, 'arn:aws:kms:us-east-1:111122223333:alias/app']],
  );
  const described = await kms.send(new DescribeKeyCommand({ KeyId: 'alias/app' }));
  assert.equal(described.KeyMetadata!.Arn, meta.Arn);

  // Encrypt/Decrypt with the encryption context bound in.
  const ec = { tenant: 'a', purpose: 'test' };
  const enc = await kms.send(
    new EncryptCommand({ KeyId: 'alias/app', Plaintext: Buffer.from('top secret'), EncryptionContext: ec }),
  );
  assert.equal(enc.KeyId, meta.Arn);
  const dec = await kms.send(
    new DecryptCommand({
      CiphertextBlob: enc.CiphertextBlob,
      EncryptionContext: { purpose: 'test', tenant: 'a' },
    }),
  );
  assert.equal(Buffer.from(dec.Plaintext!).toString(), 'top secret');
  assert.equal(dec.KeyId, meta.Arn);
  await assert.rejects(
    kms.send(
      new DecryptCommand({
        CiphertextBlob: enc.CiphertextBlob,
        EncryptionContext: { tenant: 'b', purpose: 'test' },
      }),
    ),
    {
      name: 'InvalidCiphertextException',
    },
  );
  await assert.rejects(kms.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob })), {
    name: 'InvalidCiphertextException',
  });
  const tampered = Buffer.from(enc.CiphertextBlob!);
  tampered[tampered.length - 1]! ^= 1;
  await assert.rejects(kms.send(new DecryptCommand({ CiphertextBlob: tampered, EncryptionContext: ec })), {
    name: 'InvalidCiphertextException',
  });

  // ReEncrypt to a second key; IncorrectKey when the named key is not the blob's.
  const second = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!;
  const re = await kms.send(
    new ReEncryptCommand({
      CiphertextBlob: enc.CiphertextBlob,
      SourceEncryptionContext: ec,
      DestinationKeyId: second.KeyId,
    }),
  );
  assert.equal(re.SourceKeyId, meta.Arn);
  assert.equal(re.KeyId, second.Arn);
  await assert.rejects(
    kms.send(new DecryptCommand({ CiphertextBlob: re.CiphertextBlob, KeyId: meta.KeyId })),
    {
      name: 'IncorrectKeyException',
    },
  );
  const dec2 = await kms.send(new DecryptCommand({ CiphertextBlob: re.CiphertextBlob, KeyId: second.Arn }));
  assert.equal(Buffer.from(dec2.Plaintext!).toString(), 'top secret');

  // Data keys, key pairs, random.
  const dk = await kms.send(new GenerateDataKeyCommand({ KeyId: meta.KeyId, KeySpec: 'AES_128' }));
  assert.equal(dk.Plaintext!.length, 16);
  const dkBack = await kms.send(new DecryptCommand({ CiphertextBlob: dk.CiphertextBlob }));
  assert.deepEqual(Buffer.from(dkBack.Plaintext!), Buffer.from(dk.Plaintext!));
  const dkw = await kms.send(
    new GenerateDataKeyWithoutPlaintextCommand({ KeyId: meta.KeyId, NumberOfBytes: 64 }),
  );
  assert.equal((dkw as unknown as Record<string, unknown>).Plaintext, undefined);
  assert.equal(
    (await kms.send(new DecryptCommand({ CiphertextBlob: dkw.CiphertextBlob }))).Plaintext!.length,
    64,
  );
  const pair = await kms.send(
    new GenerateDataKeyPairCommand({ KeyId: meta.KeyId, KeyPairSpec: 'ECC_NIST_P256' }),
  );
  const pairBack = await kms.send(new DecryptCommand({ CiphertextBlob: pair.PrivateKeyCiphertextBlob }));
  assert.deepEqual(Buffer.from(pairBack.Plaintext!), Buffer.from(pair.PrivateKeyPlaintext!));
  assert.equal((await kms.send(new GenerateRandomCommand({ NumberOfBytes: 1024 }))).Plaintext!.length, 1024);
  await assert.rejects(kms.send(new GenerateRandomCommand({ NumberOfBytes: 1025 })), {
    name: 'ValidationException',
  });
  await assert.rejects(kms.send(new EncryptCommand({ KeyId: meta.KeyId, Plaintext: Buffer.alloc(4097) })), {
    name: 'ValidationException',
  });
  await assert.rejects(kms.send(new DescribeKeyCommand({ KeyId: 'alias/nope' })), {
    name: 'NotFoundException',
  });
  await assert.rejects(kms.send(new DescribeKeyCommand({ KeyId: '00000000-0000-0000-0000-000000000000' })), {
    name: 'NotFoundException',
  });

  // Signatures: a wrong secret and an unknown key id are refused with KMS's error types.
  await assert.rejects(
    client(emu.url, { ...CREDS, secretAccessKey: 'wrong' }).send(new ListKeysCommand({})),
    {
      name: 'InvalidSignatureException',
    },
  );
  await assert.rejects(
    client(emu.url, { accessKeyId: 'AKIDUNKNOWN', secretAccessKey: 'x' }).send(new ListKeysCommand({})),
    {
      name: 'UnrecognizedClientException',
    },
  );

  // Policies: the default lets the account do everything; a malformed one is refused.
  const policy = JSON.parse(
    (await kms.send(new GetKeyPolicyCommand({ KeyId: meta.KeyId, PolicyName: 'default' }))).Policy!,
  );
  assert.equal(policy.Statement[0].Action, 'kms:*');
  await assert.rejects(
    kms.send(
      new PutKeyPolicyCommand({ KeyId: meta.KeyId, PolicyName: 'default', Policy: '{"Statement": 1}' }),
    ),
    {
      name: 'MalformedPolicyDocumentException',
    },
  );

  // Recipient: the document is verified against the root and the secret comes back only as CMS.
  const recipient = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = recipient.publicKey.export({ type: 'spki', format: 'der' });
  const doc = await nsm.attestation({ public_key: spki });
  const attested = await kms.send(
    new DecryptCommand({
      CiphertextBlob: enc.CiphertextBlob,
      EncryptionContext: ec,
      Recipient: { AttestationDocument: doc, KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' },
    }),
  );
  assert.equal(attested.Plaintext, undefined);
  assert.equal(
    decryptEnvelope(attested.CiphertextForRecipient!, recipient.privateKey).toString(),
    'top secret',
  );
  const forged = Buffer.from(doc);
  forged[forged.length - 10]! ^= 1;
  await assert.rejects(
    kms.send(
      new GenerateRandomCommand({
        NumberOfBytes: 8,
        Recipient: { AttestationDocument: forged, KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' },
      }),
    ),
    { name: 'ValidationException', message: /AttestationDocument is not valid/ },
  );

  // Restart on the same state directory: nothing is lost.
  const listedBefore = (await kms.send(new ListKeysCommand({}))).Keys!.map((k) => k.KeyId).sort();
  await stop(emu);
  kms.destroy();
  emu = await startEmulator(args);
  kms = client(emu.url);
  assert.deepEqual((await kms.send(new ListKeysCommand({}))).Keys!.map((k) => k.KeyId).sort(), listedBefore);
  const afterRestart = await kms.send(
    new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob, EncryptionContext: ec }),
  );
  assert.equal(Buffer.from(afterRestart.Plaintext!).toString(), 'top secret');
  assert.equal((await kms.send(new ListAliasesCommand({}))).Aliases!.length, 1);
  kms.destroy();
  await stop(emu);

  // A corrupt key file stops the emulator with an error naming it (never an empty key store).
  const keyFile = readdirSync(join(dir, 'state', 'keys')).find((f) => f.endsWith('.json'))!;
  writeFileSync(join(dir, 'state', 'keys', keyFile), '{"keyId": "truncat');
  await assert.rejects(startEmulator(args), (err: Error & { code?: number; stderr?: string }) => {
    assert.notEqual(err.code, 0);
    assert.match(err.stderr ?? '', new RegExp(`${keyFile}: corrupt`));
    return true;
  });
});
