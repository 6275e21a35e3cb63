// `cloister kms policy --lint`: one policy per mistake, each found (kind, statement, principal) with the
// verdict the emulator's evaluator gives; and the policies `cloister kms policy` prints are accepted.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { keyPolicy } from '../../../src/key-policy/generate.ts';
import { type FindingKind, formatReport, lintPolicy } from '../../../src/key-policy/lint.ts';
import { defaultPolicy } from '../../../src/kms-emulator/actions.ts';
import { seededRandom } from '../../helpers/seeded-random.ts';

const A = '111122223333';
const ROLE = `arn:aws:iam::${A}:role/enclave`;
const ADMIN = `arn:aws:iam::${A}:role/key-admin`;
const ROOT = `arn:aws:iam::${A}:root`;
const P = 'kms:RecipientAttestation:';
const PCR0 = '3f'.repeat(48);
const PCR8 = '8e'.repeat(48);
const ZERO = '0'.repeat(96);

type S = Record<string, unknown>;
const attested = (condition: S, extra: S = {}): S => ({
  Sid: 'EnclaveDecrypts',
  Effect: 'Allow',
  Principal: { AWS: ROLE },
  Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
  Resource: '*',
  Condition: condition,
  ...extra,
});
const admin: S = {
  Sid: 'Admin',
  Effect: 'Allow',
  Principal: { AWS: ADMIN },
  Action: ['kms:Encrypt', 'kms:DescribeKey', 'kms:PutKeyPolicy'],
  Resource: '*',
};
const good = attested({ StringEqualsIgnoreCase: { [`${P}ImageSha384`]: PCR0 } });
const doc = (...statements: S[]) => JSON.stringify({ Version: '2012-10-17', Statement: statements });

interface Case {
  name: string;
  policy: string;
  /** Every error kind the report must have, with the statement and (for access findings) principal. */
  errors: Array<{ kind: FindingKind; statement?: string; principal?: RegExp }>;
  warnings?: FindingKind[];
}

const CASES: Case[] = [
  {
    name: "AWS's default key policy (Enable IAM User Permissions, root, kms:*) leaks to every IAM principal",
    policy: defaultPolicy(A),
    errors: [
      { kind: 'leak', statement: 'Enable IAM User Permissions', principal: /every IAM principal of account/ },
      { kind: 'indirect-leak', statement: 'Enable IAM User Permissions' },
    ],
  },
  {
    name: 'the default statement kept beside a correct attested statement still leaks (sdk-c #157)',
    policy: JSON.stringify({ Statement: [JSON.parse(defaultPolicy(A)).Statement[0], good, admin] }),
    errors: [{ kind: 'leak', statement: 'Enable IAM User Permissions' }],
  },
  {
    name: 'a role statement without a condition',
    policy: doc(admin, { ...good, Condition: undefined }),
    errors: [{ kind: 'leak', statement: 'EnclaveDecrypts', principal: /role\/enclave/ }],
  },
  {
    name: 'StringLike "*" on ImageSha384: any enclave',
    policy: doc(admin, attested({ StringLike: { [`${P}ImageSha384`]: '*' } })),
    errors: [
      { kind: 'wildcard', statement: 'EnclaveDecrypts' },
      { kind: 'any-enclave', statement: 'EnclaveDecrypts', principal: /role\/enclave/ },
    ],
  },
  {
    name: 'StringEqualsIfExists: a request without a document passes',
    policy: doc(admin, attested({ StringEqualsIgnoreCaseIfExists: { [`${P}PCR0`]: PCR0 } })),
    errors: [{ kind: 'leak', statement: 'EnclaveDecrypts' }],
  },
  {
    name: 'a typo key (PCR00) locks the enclave out',
    policy: doc(admin, attested({ StringEqualsIgnoreCase: { [`${P}PCR00`]: PCR0 } })),
    errors: [{ kind: 'unknown-key', statement: 'EnclaveDecrypts' }],
    warnings: ['no-decrypt'],
  },
  {
    name: 'a typo key under a negated operator opens the key to every document',
    policy: doc(admin, attested({ StringNotEquals: { [`${P}ImageSha348`]: PCR0 } })),
    errors: [
      { kind: 'unknown-key', statement: 'EnclaveDecrypts' },
      { kind: 'leak', statement: 'EnclaveDecrypts' },
    ],
  },
  {
    name: 'a 95-character PCR value',
    policy: doc(admin, attested({ StringEqualsIgnoreCase: { [`${P}PCR0`]: PCR0.slice(1) } })),
    errors: [{ kind: 'pcr-value', statement: 'EnclaveDecrypts' }],
    warnings: ['no-decrypt'],
  },
  {
    name: 'upper-case hex under case-sensitive StringEquals never matches',
    policy: doc(admin, attested({ StringEquals: { [`${P}PCR0`]: PCR0.toUpperCase() } })),
    errors: [{ kind: 'pcr-value', statement: 'EnclaveDecrypts' }],
    warnings: ['no-decrypt'],
  },
  {
    name: 'PCR0 of all zeros: debug mode',
    policy: doc(admin, attested({ StringEqualsIgnoreCase: { [`${P}PCR0`]: ZERO } })),
    errors: [
      { kind: 'debug-mode', statement: 'EnclaveDecrypts' },
      { kind: 'debug-mode', statement: 'EnclaveDecrypts', principal: /role\/enclave/ },
    ],
  },
  {
    name: 'a wildcard principal with no condition',
    policy: doc(admin, { ...good, Principal: '*', Condition: undefined }),
    errors: [{ kind: 'leak', statement: 'EnclaveDecrypts', principal: /any AWS principal/ }],
  },
  {
    name: 'an administrator with kms:*',
    policy: doc({ ...admin, Action: 'kms:*' }, good),
    errors: [
      { kind: 'leak', statement: 'Admin', principal: /role\/key-admin/ },
      { kind: 'indirect-leak', statement: 'Admin' },
    ],
  },
  {
    name: 'an administrator with kms:Create* (CreateGrant) and kms:ReEncrypt*',
    policy: doc({ ...admin, Action: ['kms:Create*', 'kms:ReEncrypt*'] }, good),
    errors: [{ kind: 'indirect-leak', statement: 'Admin', principal: /role\/key-admin/ }],
  },
  {
    name: 'NotAction allowing everything but Encrypt',
    policy: doc({ ...admin, Action: undefined, NotAction: 'kms:Encrypt' }, good),
    errors: [{ kind: 'leak', statement: 'Admin' }],
  },
  {
    name: 'a statement without Principal',
    policy: doc(admin, { ...good, Principal: undefined }),
    errors: [{ kind: 'no-principal', statement: 'EnclaveDecrypts' }],
  },
  {
    name: 'a wildcard principal narrowed to the account by kms:CallerAccount: every principal of it',
    policy: doc(admin, {
      ...good,
      Principal: '*',
      Condition: { StringEquals: { 'kms:CallerAccount': A } },
    }),
    errors: [
      {
        kind: 'leak',
        statement: 'EnclaveDecrypts',
        principal: /every IAM principal of account 111122223333/,
      },
    ],
  },
  {
    name: 'a wildcard principal narrowed by aws:PrincipalArn to the role, without attestation',
    policy: doc(admin, { ...good, Principal: '*', Condition: { ArnEquals: { 'aws:PrincipalArn': ROLE } } }),
    errors: [
      { kind: 'leak', statement: 'EnclaveDecrypts', principal: /^arn:aws:iam::111122223333:role\/enclave$/ },
    ],
  },
  {
    name: 'a wildcard principal may rewrite the policy',
    policy: doc({ ...admin, Principal: { AWS: '*' } }, good),
    errors: [{ kind: 'policy-change', statement: 'Admin', principal: /any AWS principal/ }],
  },
  {
    name: 'NitroTPM: StringLike "*" on NitroTPMPCR4',
    policy: doc(admin, attested({ StringLike: { [`${P}NitroTPMPCR4`]: '*' } })),
    errors: [
      { kind: 'wildcard', statement: 'EnclaveDecrypts' },
      { kind: 'any-enclave', statement: 'EnclaveDecrypts' },
    ],
  },
  {
    name: 'NitroTPM: a typo (NitroTpmPCR24 is past the 24 PCRs) and a short value',
    policy: doc(
      admin,
      attested({ StringEqualsIgnoreCase: { [`${P}NitroTPMPCR24`]: PCR8, [`${P}NitroTPMPCR7`]: 'abc' } }),
    ),
    errors: [
      { kind: 'unknown-key', statement: 'EnclaveDecrypts' },
      { kind: 'pcr-value', statement: 'EnclaveDecrypts' },
    ],
    warnings: ['no-decrypt'],
  },
  {
    name: 'not valid JSON',
    policy: '{"Statement": [',
    errors: [{ kind: 'malformed' }],
  },
  {
    name: 'an operator KMS has and the emulator does not evaluate is reported, not guessed',
    policy: doc(admin, attested({ NumericLessThan: { 'kms:RotationPeriodInDays': '30' } })),
    errors: [{ kind: 'malformed', statement: 'Statement[1]' }],
  },
];

const ACCEPTED: Array<{ name: string; policy: string; warnings?: FindingKind[] }> = [
  { name: 'an attested role statement and an administrator without plaintext', policy: doc(admin, good) },
  {
    name: 'an unconditional Allow closed by an explicit Deny unless PCR0 matches',
    policy: doc(
      admin,
      { ...good, Condition: undefined },
      {
        Sid: 'DenyUnlessImage',
        Effect: 'Deny',
        Principal: '*',
        Action: [
          'kms:Decrypt',
          'kms:GenerateDataKey*',
          'kms:DeriveSharedSecret',
          'kms:ReEncrypt*',
          'kms:CreateGrant',
        ],
        Resource: '*',
        Condition: { StringNotEqualsIgnoreCase: { [`${P}ImageSha384`]: PCR0 } },
      },
    ),
  },
  {
    name: 'the AWS default statement closed by a Deny per pinned PCR (root keeps its admin powers)',
    policy: JSON.stringify({
      Statement: [
        JSON.parse(defaultPolicy(A)).Statement[0],
        ...(keyPolicy({ role: ROLE, admin: ADMIN, pcrs: { 0: PCR0, 8: PCR8 } }).Statement as S[]).filter(
          (s) => s.Effect === 'Deny',
        ),
      ],
    }),
  },
  {
    name: 'the spelling ImageSHA384 works (key names are case-insensitive), with a warning',
    policy: doc(admin, attested({ StringEqualsIgnoreCase: { [`${P}ImageSHA384`]: PCR0 } })),
    warnings: ['key-spelling'],
  },
  {
    name: 'pinning only PCR3 (the parent role) decrypts, with a weak-pin warning',
    policy: doc(admin, attested({ StringEqualsIgnoreCase: { [`${P}PCR3`]: PCR8 } })),
    warnings: ['weak-pin'],
  },
  {
    name: 'cloister kms policy: ImageSha384',
    policy: JSON.stringify(keyPolicy({ role: ROLE, admin: ADMIN, imageSha384: PCR0 })),
  },
  {
    name: 'cloister kms policy: PCR0 and PCR8, every attesting action, the account root as administrator',
    policy: JSON.stringify(
      keyPolicy({
        role: ROLE,
        admin: ROOT,
        pcrs: { 0: PCR0, 8: PCR8 },
        actions: ['Decrypt', 'GenerateDataKey', 'GenerateDataKeyPair', 'DeriveSharedSecret'],
      }),
    ),
  },
  {
    name: 'cloister kms policy: NitroTPM PCRs 4 and 7',
    policy: JSON.stringify(keyPolicy({ role: ROLE, admin: ADMIN, nitroTpmPcrs: { 4: PCR0, 7: PCR8 } })),
  },
  {
    name: 'aws kms get-key-policy output (the policy as a string in Policy)',
    policy: JSON.stringify({ Policy: doc(admin, good), PolicyName: 'default' }),
  },
];

for (const c of CASES) {
  test(`lint finds: ${c.name}`, () => {
    const report = lintPolicy(c.policy);
    const text = formatReport('policy.json', report);
    assert.equal(report.ok, false, text);
    for (const e of c.errors) {
      const hit = report.findings.find(
        (f) =>
          f.severity === 'error' &&
          f.kind === e.kind &&
          (e.statement === undefined || f.statements.includes(e.statement)) &&
          (e.principal === undefined || e.principal.test(f.principal ?? '')),
      );
      assert.ok(hit, `no ${e.kind} error on ${e.statement ?? 'the policy'} in:\n${text}`);
    }
    for (const w of c.warnings ?? [])
      assert.ok(
        report.findings.some((f) => f.severity === 'warning' && f.kind === w),
        `no ${w} warning in:\n${text}`,
      );
    // The text names every error's statement.
    for (const f of report.findings.filter((x) => x.severity === 'error'))
      for (const s of f.statements) assert.ok(text.includes(`"${s}"`), text);
  });
}

for (const c of ACCEPTED) {
  test(`lint accepts: ${c.name}`, () => {
    const report = lintPolicy(c.policy);
    const text = formatReport('policy.json', report);
    assert.equal(report.ok, true, text);
    assert.deepEqual(
      report.findings.filter((f) => f.severity === 'warning').map((f) => f.kind),
      c.warnings ?? [],
      text,
    );
    assert.match(text, /policy\.json: no leak found/);
  });
}

test('a leak is reported once per principal and statement, with every action it allows', () => {
  const report = lintPolicy(defaultPolicy(A));
  const leaks = report.findings.filter((f) => f.kind === 'leak');
  assert.equal(leaks.length, 1);
  assert.deepEqual(leaks[0]!.actions, [
    'kms:Decrypt',
    'kms:GenerateDataKey',
    'kms:GenerateDataKeyPair',
    'kms:DeriveSharedSecret',
  ]);
  // GenerateDataKeyWithoutPlaintext and Encrypt yield no plaintext: never in a leak.
  assert.ok(!report.findings.some((f) => f.actions?.includes('kms:GenerateDataKeyWithoutPlaintext')));
});

test('a mangled policy is always a report, never an exception (structure fuzz of a printed policy)', (t) => {
  const rnd = seededRandom(t);
  const base = keyPolicy({ role: ROLE, admin: ADMIN, imageSha384: PCR0 });
  const junk: unknown[] = [
    null,
    7,
    true,
    '',
    '*',
    'kms:*',
    [],
    {},
    ['*', 1],
    { AWS: [null] },
    { x: { y: 1 } },
  ];
  const pick = <T>(xs: readonly T[]): T => xs[rnd.int(0, xs.length)]!;
  // Replaces or deletes one random node of the tree.
  const mangle = (node: unknown, depth: number): unknown => {
    if (node === null || typeof node !== 'object' || rnd.int(0, 4) === 0 || depth > 6) return pick(junk);
    const copy: Record<string, unknown> | unknown[] = Array.isArray(node) ? [...node] : { ...node };
    const keys = Object.keys(copy);
    if (keys.length === 0) return pick(junk);
    const k = pick(keys);
    if (rnd.int(0, 5) === 0) delete (copy as Record<string, unknown>)[k];
    else (copy as Record<string, unknown>)[k] = mangle((copy as Record<string, unknown>)[k], depth + 1);
    return copy;
  };
  const kinds = new Set<string>();
  for (let i = 0; i < 400; i++) {
    const text = JSON.stringify(mangle(base, 0)) ?? 'null';
    const report = lintPolicy(text);
    assert.equal(typeof report.ok, 'boolean', text);
    assert.equal(report.errors, report.findings.filter((f) => f.severity === 'error').length);
    for (const f of report.findings) kinds.add(f.kind);
  }
  t.diagnostic(`finding kinds seen: ${[...kinds].sort().join(', ')}`);
});
