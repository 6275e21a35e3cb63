// `cloister kms policy`'s generator: what it pins, who gets what, and the inputs it refuses by name.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { keyPolicy } from '../../../src/key-policy/generate.ts';
import { evaluatePolicy, parsePolicy } from '../../../src/kms-emulator/policy.ts';

const ROLE = 'arn:aws:iam::111122223333:role/enclave';
const SESSION = 'arn:aws:sts::111122223333:assumed-role/enclave/i-0abc';
const ADMIN = 'arn:aws:iam::111122223333:user/ops';
const PCR0 = 'AB'.repeat(48);
const P = 'kms:RecipientAttestation:';

test('the role decrypts only with the pinned measurements; the administrator never gets a plaintext', () => {
  const policy = keyPolicy({ role: ROLE, admin: ADMIN, imageSha384: PCR0 });
  const doc = parsePolicy(JSON.stringify(policy));
  const right = { [`${P}ImageSha384`]: PCR0.toLowerCase(), [`${P}PCR0`]: PCR0.toLowerCase() };
  const wrong = { [`${P}ImageSha384`]: 'cd'.repeat(48), [`${P}PCR0`]: 'cd'.repeat(48) };
  const can = (action: string, who: string, ctx: Record<string, string>) =>
    evaluatePolicy(doc, action, ctx, who).allowed;
  assert.equal(can('kms:Decrypt', SESSION, right), true);
  assert.equal(can('kms:GenerateDataKeyPair', SESSION, right), true);
  assert.equal(can('kms:DeriveSharedSecret', SESSION, right), false); // not asked for
  assert.equal(can('kms:Decrypt', SESSION, wrong), false);
  assert.equal(can('kms:Decrypt', SESSION, {}), false);
  assert.equal(can('kms:Encrypt', SESSION, {}), true);
  assert.equal(can('kms:Encrypt', ADMIN, {}), true);
  assert.equal(can('kms:PutKeyPolicy', ADMIN, {}), true);
  for (const a of ['kms:Decrypt', 'kms:ReEncryptFrom', 'kms:CreateGrant', 'kms:GenerateDataKey'])
    assert.equal(can(a, ADMIN, right), false, a);
  assert.equal(can('kms:PutKeyPolicy', SESSION, {}), false);
  // Lower-case hex in the output, whatever the input's case.
  assert.ok(JSON.stringify(policy).includes(PCR0.toLowerCase()));
  assert.ok(!JSON.stringify(policy).includes(PCR0));
});

test('refused with the flag named: bad ARNs, PCR values, indexes, mixed document kinds, no pin', () => {
  const ok = { role: ROLE, admin: ADMIN };
  const cases: Array<[Parameters<typeof keyPolicy>[0], RegExp]> = [
    [{ ...ok, role: '*', imageSha384: PCR0 }, /--role must be an IAM role or user ARN/],
    [{ ...ok, role: 'arn:aws:iam::111122223333:root', imageSha384: PCR0 }, /--role/],
    [{ ...ok, admin: 'arn:aws:iam::1:root', imageSha384: PCR0 }, /--admin/],
    [{ ...ok, imageSha384: PCR0.slice(1) }, /--image-sha384 must be 96 hex characters .* not 95/],
    [{ ...ok, imageSha384: `${PCR0.slice(2)}zz` }, /non-hex/],
    [{ ...ok, imageSha384: '0'.repeat(96) }, /all zeros: .*debug-mode/],
    [{ ...ok, pcrs: { 2: '0'.repeat(96) } }, /--pcr 2 is all zeros/],
    [{ ...ok, pcrs: { 32: PCR0 } }, /--pcr index must be 0..31/],
    [{ ...ok, nitroTpmPcrs: { 24: PCR0 } }, /--nitrotpm-pcr index must be 0..23/],
    [{ ...ok, imageSha384: PCR0, pcrs: { 0: 'cd'.repeat(48) } }, /same measurement and differ/],
    [{ ...ok, imageSha384: PCR0, nitroTpmPcrs: { 4: PCR0 } }, /one policy pins one kind/],
    [ok, /give the measurements to pin/],
    [{ ...ok, imageSha384: PCR0, actions: ['Encrypt'] }, /--action must be one of Decrypt, .*not 'Encrypt'/],
  ];
  for (const [req, msg] of cases) assert.throws(() => keyPolicy(req), msg, JSON.stringify(req));
});

test('a PCR of all zeros is fine where it is no debug marker (PCR 16, NitroTPM)', () => {
  const zero = '0'.repeat(96);
  assert.ok(keyPolicy({ role: ROLE, admin: ADMIN, pcrs: { 0: PCR0, 16: zero } }));
  assert.ok(keyPolicy({ role: ROLE, admin: ADMIN, nitroTpmPcrs: { 4: PCR0, 12: zero } }));
});
