// Condition blocks as IAM evaluates them: every operator and key must hold (AND), any value may match
// (OR); ...IfExists holds when the key is missing; Null tests presence; NitroTPM keys are ordinary keys.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { evaluatePolicy, parsePolicy, wildcardMatch } from '../../../src/kms-emulator/policy.ts';

const P = 'kms:RecipientAttestation:';
const PCR0 = 'aa'.repeat(48);
const PCR8 = 'bb'.repeat(48);
const OTHER = 'cc'.repeat(48);

const decrypt = (condition: Record<string, unknown>) =>
  parsePolicy(
    JSON.stringify({
      Statement: [{ Effect: 'Allow', Principal: '*', Action: 'kms:Decrypt', Condition: condition }],
    }),
  );
const can = (doc: ReturnType<typeof parsePolicy>, ctx: Record<string, string>) =>
  evaluatePolicy(doc, 'kms:Decrypt', ctx).allowed;

test('two keys in one operator, and two operators, must all hold (AND)', () => {
  const sameOp = decrypt({ StringEqualsIgnoreCase: { [`${P}PCR0`]: PCR0, [`${P}PCR8`]: PCR8 } });
  assert.equal(can(sameOp, { [`${P}PCR0`]: PCR0, [`${P}PCR8`]: PCR8 }), true);
  assert.equal(can(sameOp, { [`${P}PCR0`]: PCR0, [`${P}PCR8`]: OTHER }), false);
  assert.equal(can(sameOp, { [`${P}PCR0`]: PCR0 }), false);
  const twoOps = decrypt({
    StringEqualsIgnoreCase: { [`${P}ImageSha384`]: PCR0 },
    StringNotEquals: { [`${P}PCR8`]: OTHER },
  });
  assert.equal(can(twoOps, { [`${P}ImageSha384`]: PCR0, [`${P}PCR8`]: PCR8 }), true);
  assert.equal(can(twoOps, { [`${P}ImageSha384`]: PCR0, [`${P}PCR8`]: OTHER }), false);
});

test('several values of one key: any may match (OR)', () => {
  const doc = decrypt({ StringEqualsIgnoreCase: { [`${P}PCR0`]: [PCR0, PCR8] } });
  assert.equal(can(doc, { [`${P}PCR0`]: PCR0 }), true);
  assert.equal(can(doc, { [`${P}PCR0`]: PCR8 }), true);
  assert.equal(can(doc, { [`${P}PCR0`]: OTHER }), false);
  // Negated with several values: none may match.
  const not = decrypt({ StringNotEquals: { [`${P}PCR0`]: [PCR0, PCR8] } });
  assert.equal(can(not, { [`${P}PCR0`]: PCR8 }), false);
  assert.equal(can(not, { [`${P}PCR0`]: OTHER }), true);
});

test('...IfExists holds when the key is missing: an Allow with it lets a request without a document in', () => {
  const doc = decrypt({ StringEqualsIgnoreCaseIfExists: { [`${P}PCR0`]: PCR0 } });
  assert.equal(can(doc, {}), true);
  assert.equal(can(doc, { [`${P}PCR0`]: PCR0 }), true);
  assert.equal(can(doc, { [`${P}PCR0`]: OTHER }), false);
  const like = decrypt({ StringLikeIfExists: { [`${P}PCR0`]: 'aa*' } });
  assert.equal(can(like, {}), true);
  assert.equal(can(like, { [`${P}PCR0`]: OTHER }), false);
});

test('Null: "true" holds when the key is missing, "false" when it is present (booleans too)', () => {
  const absent = decrypt({ Null: { [`${P}PCR0`]: 'true' } });
  assert.equal(can(absent, {}), true);
  assert.equal(can(absent, { [`${P}PCR0`]: PCR0 }), false);
  const present = decrypt({ Null: { [`${P}PCR0`]: false } });
  assert.equal(can(present, {}), false);
  assert.equal(can(present, { [`${P}PCR0`]: OTHER }), true);
});

test('NitroTPM keys: kms:RecipientAttestation:NitroTPMPCR<N>, case-insensitive names', () => {
  const doc = decrypt({ StringEqualsIgnoreCase: { [`${P}NitroTPMPCR7`]: PCR8.toUpperCase() } });
  assert.equal(can(doc, { [`${P}NitroTPMPCR7`]: PCR8 }), true);
  assert.equal(can(doc, { 'KMS:recipientattestation:nitrotpmpcr7': PCR8 }), true);
  assert.equal(can(doc, { [`${P}PCR7`]: PCR8 }), false);
  assert.equal(can(doc, {}), false);
});

test('a Deny per pinned PCR closes every request whose document differs or is missing', () => {
  const doc = parsePolicy(
    JSON.stringify({
      Statement: [
        { Effect: 'Allow', Principal: '*', Action: 'kms:*' },
        ...[
          ['PCR0', PCR0],
          ['PCR8', PCR8],
        ].map(([k, v]) => ({
          Sid: `DenyUnless${k}`,
          Effect: 'Deny',
          Principal: '*',
          Action: 'kms:Decrypt',
          Condition: { StringNotEqualsIgnoreCase: { [`${P}${k}`]: v } },
        })),
      ],
    }),
  );
  assert.deepEqual(evaluatePolicy(doc, 'kms:Decrypt', {}), { allowed: false, by: 'DenyUnlessPCR0' });
  assert.deepEqual(evaluatePolicy(doc, 'kms:Decrypt', { [`${P}PCR0`]: PCR0, [`${P}PCR8`]: OTHER }), {
    allowed: false,
    by: 'DenyUnlessPCR8',
  });
  assert.equal(can(doc, { [`${P}PCR0`]: PCR0, [`${P}PCR8`]: PCR8 }), true);
  assert.equal(evaluatePolicy(doc, 'kms:Encrypt', {}).allowed, true);
});

test('Bool and Arn operators; unknown operators are still refused', () => {
  const bool = decrypt({ Bool: { 'aws:SecureTransport': true } });
  assert.equal(can(bool, { 'aws:SecureTransport': 'true' }), true);
  assert.equal(can(bool, { 'aws:SecureTransport': 'false' }), false);
  const arn = decrypt({ ArnNotLike: { 'aws:PrincipalArn': 'arn:aws:iam::*:role/admin' } });
  assert.equal(can(arn, { 'aws:PrincipalArn': 'arn:aws:iam::111122223333:role/admin' }), false);
  assert.equal(can(arn, { 'aws:PrincipalArn': 'arn:aws:iam::111122223333:role/app' }), true);
  for (const op of ['NumericEquals', 'ForAnyValue:StringEquals', 'NullIfExists', 'StringEqualsIfExist']) {
    assert.throws(() => decrypt({ [op]: { k: '1' } }), { type: 'MalformedPolicyDocumentException' }, op);
  }
});

test('wildcards: * and ? as IAM reads them, and no pattern from a policy makes matching slow', () => {
  for (const [pattern, text, ok] of [
    ['kms:*', 'kms:Decrypt', true],
    ['kms:GenerateDataKey*', 'kms:GenerateDataKeyPairWithoutPlaintext', true],
    ['kms:?ecrypt', 'kms:Decrypt', true],
    ['kms:?ncrypt', 'kms:Encrypt', true],
    ['kms:?ecrypt', 'kms:ReEncrypt', false],
    ['*crypt', 'kms:Decrypt', true],
    ['a*b*c', 'aXXbYYc', true],
    ['a*b*c', 'aXXbYY', false],
    ['', '', true],
    ['*', '', true],
    ['a.c', 'abc', false], // regular-expression characters are literal
  ] as const) {
    assert.equal(wildcardMatch(pattern, text, false), ok, `${pattern} ~ ${text}`);
  }
  assert.equal(wildcardMatch('KMS:DECRYPT', 'kms:Decrypt', true), true);
  // A regular expression built from these would backtrack for hours; they must decide at once.
  const stars = `kms:${'*a'.repeat(2000)}x`;
  const doc = parsePolicy(
    JSON.stringify({
      Statement: [
        { Effect: 'Allow', Principal: '*', Action: stars },
        {
          Effect: 'Allow',
          Principal: '*',
          Action: 'kms:Decrypt',
          Condition: { StringLike: { [`${P}PCR0`]: `${'*a'.repeat(2000)}x` } },
        },
      ],
    }),
  );
  assert.equal(evaluatePolicy(doc, `kms:${'a'.repeat(3000)}`, {}).allowed, false);
  assert.equal(can(doc, { [`${P}PCR0`]: 'a'.repeat(3000) }), false);
});
