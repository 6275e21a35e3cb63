// Key policy evaluation in the emulator: IAM's order (explicit Deny, then Allow, else deny) and the
// attestation condition keys.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluatePolicy, parsePolicy } from '../../../src/kms-emulator/policy.ts';

const PCR0 = 'aa'.repeat(48);
const attested = { 'kms:RecipientAttestation:ImageSha384': PCR0, 'kms:RecipientAttestation:PCR0': PCR0 };

const policy = (statements: unknown[]) =>
  parsePolicy(JSON.stringify({ Version: '2012-10-17', Statement: statements }));

test('Allow with an attestation condition matches only a request that carries the right document', () => {
  const p = policy([
    {
      Effect: 'Allow',
      Action: 'kms:Decrypt',
      Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:ImageSha384': PCR0.toUpperCase() } },
    },
  ]);
  assert.equal(evaluatePolicy(p, 'kms:Decrypt', attested).allowed, true);
  assert.equal(evaluatePolicy(p, 'kms:Decrypt', {}).allowed, false);
  assert.equal(
    evaluatePolicy(p, 'kms:Decrypt', { 'kms:RecipientAttestation:ImageSha384': 'bb'.repeat(48) }).allowed,
    false,
  );
  assert.equal(evaluatePolicy(p, 'kms:Encrypt', attested).allowed, false);
  // StringEquals is case-sensitive.
  const strict = policy([
    {
      Effect: 'Allow',
      Action: 'kms:Decrypt',
      Condition: { StringEquals: { 'kms:RecipientAttestation:PCR0': PCR0.toUpperCase() } },
    },
  ]);
  assert.equal(evaluatePolicy(strict, 'kms:Decrypt', attested).allowed, false);
});

test('an explicit Deny wins; a negated condition holds when the key is missing (as in IAM)', () => {
  const p = policy([
    { Effect: 'Allow', Action: 'kms:*' },
    {
      Sid: 'OnlyTheImage',
      Effect: 'Deny',
      Action: ['kms:Decrypt', 'kms:GenerateDataKey*'],
      Condition: { StringNotEqualsIgnoreCase: { 'kms:RecipientAttestation:PCR0': PCR0 } },
    },
  ]);
  assert.deepEqual(evaluatePolicy(p, 'kms:Decrypt', {}), { allowed: false, by: 'OnlyTheImage' });
  assert.deepEqual(evaluatePolicy(p, 'kms:GenerateDataKeyPair', {}), { allowed: false, by: 'OnlyTheImage' });
  assert.equal(evaluatePolicy(p, 'kms:Decrypt', attested).allowed, true);
  assert.equal(evaluatePolicy(p, 'kms:Encrypt', {}).allowed, true);
});

test('NotAction, wildcards and StringLike', () => {
  const p = policy([
    { Effect: 'Allow', NotAction: ['kms:Decrypt', 'kms:PutKeyPolicy'] },
    {
      Effect: 'Allow',
      Action: 'kms:decrypt',
      Condition: { StringLike: { 'kms:RecipientAttestation:PCR0': 'aaaa*' } },
    },
  ]);
  assert.equal(evaluatePolicy(p, 'kms:DescribeKey', {}).allowed, true);
  assert.equal(evaluatePolicy(p, 'kms:PutKeyPolicy', {}).allowed, false);
  assert.equal(evaluatePolicy(p, 'kms:Decrypt', {}).allowed, false);
  assert.equal(evaluatePolicy(p, 'kms:Decrypt', attested).allowed, true);
});

test('malformed policies are refused with MalformedPolicyDocumentException', () => {
  for (const text of [
    '',
    'not json',
    '{}',
    '{"Statement": []}',
    '{"Statement": [{"Effect": "Maybe", "Action": "kms:*"}]}',
    '{"Statement": [{"Effect": "Allow"}]}',
    '{"Statement": [{"Effect": "Allow", "Action": "kms:*", "Condition": {"NumericEquals": {"a": "1"}}}]}',
    // Not objects where statements belong: a typed refusal, not a TypeError (a 500 from the emulator).
    '{"Statement": [null]}',
    '{"Statement": [{"Effect": "Allow", "Action": "kms:*"}, 7]}',
    '{"Statement": [["Allow"]]}',
  ]) {
    assert.throws(() => parsePolicy(text), { type: 'MalformedPolicyDocumentException' }, text);
  }
});
