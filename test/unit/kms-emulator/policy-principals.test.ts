// Key policy Principal / NotPrincipal as KMS reads them: "*", an account (id or root ARN) = every
// principal of it, a role = its sessions, anything else exactly. And the emulator enforces them on the
// caller its credentials name.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CreateKeyCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { evaluatePolicy, parsePolicy } from '../../../src/kms-emulator/policy.ts';
import { startKmsEmulator } from '../../../src/kms-emulator/server.ts';
import { createLogger } from '../../../src/log/logger.ts';

const A = '111122223333';
const ROLE = `arn:aws:iam::${A}:role/app/enclave-role`;
const SESSION = `arn:aws:sts::${A}:assumed-role/enclave-role/i-0123456789`;
const USER = `arn:aws:iam::${A}:user/alice`;
const STRANGER = 'arn:aws:iam::444455556666:user/mallory';

const allowFor = (principal: unknown, extra: Record<string, unknown> = {}) =>
  parsePolicy(
    JSON.stringify({
      Statement: [{ Effect: 'Allow', Action: 'kms:Encrypt', ...extra, Principal: principal }],
    }),
  );
const allowed = (doc: ReturnType<typeof parsePolicy>, who: string) =>
  evaluatePolicy(doc, 'kms:Encrypt', {}, who).allowed;

test('Principal "*" and {"AWS": "*"} name everyone, of every account', () => {
  for (const p of ['*', { AWS: '*' }]) {
    assert.equal(allowed(allowFor(p), STRANGER), true);
    assert.equal(allowed(allowFor(p), SESSION), true);
  }
});

test('an account root ARN or account id names every principal of that account, and no other', () => {
  for (const p of [{ AWS: `arn:aws:iam::${A}:root` }, { AWS: A }]) {
    assert.equal(allowed(allowFor(p), USER), true);
    assert.equal(allowed(allowFor(p), SESSION), true);
    assert.equal(allowed(allowFor(p), STRANGER), false);
  }
});

test('a role names its assumed-role sessions (path ignored); a user only itself', () => {
  const role = allowFor({ AWS: ROLE });
  assert.equal(allowed(role, SESSION), true);
  assert.equal(allowed(role, `arn:aws:sts::${A}:assumed-role/other-role/i-1`), false);
  assert.equal(allowed(role, `arn:aws:sts::444455556666:assumed-role/enclave-role/i-1`), false);
  assert.equal(allowed(role, USER), false);
  const user = allowFor({ AWS: [USER, STRANGER] });
  assert.equal(allowed(user, USER), true);
  assert.equal(allowed(user, STRANGER), true);
  assert.equal(allowed(user, `arn:aws:iam::${A}:user/bob`), false);
});

test('NotPrincipal applies to everyone but the principals it names', () => {
  const doc = parsePolicy(
    JSON.stringify({
      Statement: [
        { Effect: 'Allow', Principal: '*', Action: 'kms:*' },
        { Sid: 'OnlyAlice', Effect: 'Deny', NotPrincipal: { AWS: USER }, Action: 'kms:Encrypt' },
      ],
    }),
  );
  assert.equal(allowed(doc, USER), true);
  assert.deepEqual(evaluatePolicy(doc, 'kms:Encrypt', {}, SESSION), { allowed: false, by: 'OnlyAlice' });
});

test('without a principal (the old call) Principal is not looked at; aws:PrincipalArn names a session by its role', () => {
  assert.equal(evaluatePolicy(allowFor({ AWS: ROLE }), 'kms:Encrypt', {}).allowed, true);
  const byArn = allowFor('*', {
    Condition: { ArnLike: { 'aws:PrincipalArn': `arn:aws:iam::${A}:role/enclave-*` } },
  });
  assert.equal(allowed(byArn, SESSION), true);
  assert.equal(allowed(byArn, USER), false);
  const byAccount = allowFor('*', { Condition: { StringEquals: { 'kms:CallerAccount': A } } });
  assert.equal(allowed(byAccount, USER), true);
  assert.equal(allowed(byAccount, STRANGER), false);
});

test('Principal must be "*" or an object of strings; not both Principal and NotPrincipal', () => {
  for (const s of [
    { Effect: 'Allow', Action: 'kms:*', Principal: 'alice' },
    { Effect: 'Allow', Action: 'kms:*', Principal: { AWS: 7 } },
    { Effect: 'Allow', Action: 'kms:*', Principal: { AWS: [] } },
    { Effect: 'Allow', Action: 'kms:*', Principal: '*', NotPrincipal: { AWS: USER } },
  ]) {
    assert.throws(() => parsePolicy(JSON.stringify({ Statement: [s] })), {
      type: 'MalformedPolicyDocumentException',
    });
  }
});

test('the emulator matches Principal against the principal its credentials name', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-principal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const enclave = { accessKeyId: 'AKIDENCLAVE', secretAccessKey: 'enclave-secret', principal: SESSION };
  const other = { accessKeyId: 'AKIDOTHER', secretAccessKey: 'other-secret' }; // user/AKIDOTHER
  const emu = await startKmsEmulator({
    stateDir: dir,
    credentials: [enclave, other],
    logger: createLogger({ level: 'silent' }),
  });
  t.after(() => emu.close());
  const client = (c: typeof other) =>
    new KMSClient({ region: 'us-east-1', endpoint: emu.url, credentials: c, maxAttempts: 1 });
  const asEnclave = client(enclave);
  const asOther = client(other);
  t.after(() => {
    asEnclave.destroy();
    asOther.destroy();
  });
  const Policy = JSON.stringify({
    Statement: [{ Effect: 'Allow', Principal: { AWS: ROLE }, Action: 'kms:Encrypt', Resource: '*' }],
  });
  const key = (await asOther.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;
  const out = await asEnclave.send(new EncryptCommand({ KeyId: key, Plaintext: Buffer.from('x') }));
  assert.ok(out.CiphertextBlob);
  await assert.rejects(
    asOther.send(new EncryptCommand({ KeyId: key, Plaintext: Buffer.from('x') })),
    (err: Error) => {
      assert.equal(err.name, 'AccessDeniedException');
      assert.match(err.message, new RegExp(`User: arn:aws:iam::${A}:user/AKIDOTHER is not authorized`));
      return true;
    },
  );
});
