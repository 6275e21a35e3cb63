// `cloister kms policy` as a real process: the printed policy, its --lint verdict (exit 0), AWS's default
// key policy (exit 1, the statement named, text and --json), stdin, and usage errors (exit 2).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { DIST_CLI } from '../../helpers/build-outputs.ts';
import { tempDir } from '../../helpers/fixtures/temp-dir.ts';

const ROLE = 'arn:aws:iam::111122223333:role/enclave';
const ADMIN = 'arn:aws:iam::111122223333:role/key-admin';
const PCR0 = '5a'.repeat(48);

function cli(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [DIST_CLI, 'kms', ...args], {
    input,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.error, undefined);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('cloister kms policy prints JSON that cloister kms policy --lint accepts (exit 0)', (t) => {
  const dir = tempDir(t, 'cloister-kms-policy-');
  const printed = cli([
    'policy',
    '--role',
    ROLE,
    '--admin',
    ADMIN,
    '--pcr',
    `0=${PCR0}`,
    '--pcr',
    `8=${'8e'.repeat(48)}`,
  ]);
  assert.equal(printed.code, 0, printed.stderr);
  assert.equal(printed.stderr, '');
  const policy = JSON.parse(printed.stdout);
  const decrypts = policy.Statement.find((s: { Sid: string }) => s.Sid === 'EnclaveDecryptsOnlyWhenAttested');
  assert.deepEqual(decrypts.Principal, { AWS: ROLE });
  assert.deepEqual(decrypts.Condition.StringEqualsIgnoreCase, {
    'kms:RecipientAttestation:PCR0': PCR0,
    'kms:RecipientAttestation:PCR8': '8e'.repeat(48),
  });
  const file = join(dir, 'policy.json');
  writeFileSync(file, printed.stdout);
  const lint = cli(['policy', '--lint', file]);
  assert.equal(lint.code, 0, lint.stdout + lint.stderr);
  assert.match(lint.stdout, /policy\.json: no leak found\n$/);
  // The same through stdin.
  const piped = cli(['policy', '--lint', '-', '--json'], printed.stdout);
  assert.equal(piped.code, 0, piped.stdout);
  const report = JSON.parse(piped.stdout);
  assert.equal(report.ok, true);
  assert.equal(report.errors, 0);
});

test("--lint on AWS's default key policy: exit 1, the leak named by statement, as text and as --json", (t) => {
  const dir = tempDir(t, 'cloister-kms-policy-');
  const file = join(dir, 'default.json');
  writeFileSync(
    file,
    JSON.stringify({
      Version: '2012-10-17',
      Id: 'key-default-1',
      Statement: [
        {
          Sid: 'Enable IAM User Permissions',
          Effect: 'Allow',
          Principal: { AWS: 'arn:aws:iam::111122223333:root' },
          Action: 'kms:*',
          Resource: '*',
        },
      ],
    }),
  );
  const text = cli(['policy', '--lint', file]);
  assert.equal(text.code, 1, text.stdout + text.stderr);
  assert.match(
    text.stdout,
    /^error +leak +"Enable IAM User Permissions": every IAM principal of account 111122223333 \(arn:aws:iam::111122223333:root\) can get a plaintext without an attestation document: kms:Decrypt, /m,
  );
  assert.match(text.stdout, /default\.json: 3 errors, 0 warnings\n$/);
  const json = cli(['policy', '--lint', file, '--json']);
  assert.equal(json.code, 1);
  const report = JSON.parse(json.stdout);
  assert.equal(report.ok, false);
  assert.equal(report.file, file);
  assert.deepEqual(
    report.findings
      .filter((f: { severity: string }) => f.severity === 'error')
      .map((f: { kind: string }) => f.kind),
    ['leak', 'indirect-leak', 'indirect-leak'],
  );
  assert.deepEqual(report.findings[0].statements, ['Enable IAM User Permissions']);
});

test("--measurements reads PCR0 from nitro-cli build-enclave's JSON and pins it as ImageSha384", (t) => {
  const dir = tempDir(t, 'cloister-kms-policy-');
  const build = join(dir, 'build.json');
  const measurements = {
    HashAlgorithm: 'Sha384 { ... }',
    PCR0: PCR0,
    PCR1: '1b'.repeat(48),
    PCR2: '2c'.repeat(48),
  };
  writeFileSync(build, JSON.stringify({ Measurements: measurements }));
  const r = cli(['policy', '--role', ROLE, '--admin', ADMIN, '--measurements', build]);
  assert.equal(r.code, 0, r.stderr);
  const decrypts = JSON.parse(r.stdout).Statement.find(
    (s: { Sid: string }) => s.Sid === 'EnclaveDecryptsOnlyWhenAttested',
  );
  assert.deepEqual(decrypts.Condition.StringEqualsIgnoreCase, {
    'kms:RecipientAttestation:ImageSha384': PCR0,
  });
  writeFileSync(build, JSON.stringify({ Measurements: { ...measurements, PCR0: '0'.repeat(96) } }));
  const debug = cli(['policy', '--role', ROLE, '--admin', ADMIN, '--measurements', build]);
  assert.equal(debug.code, 2);
  assert.match(debug.stderr, /Measurements\.PCR0 in .*build\.json is all zeros/);
  writeFileSync(build, '{"Measurements": {}}');
  const none = cli(['policy', '--role', ROLE, '--admin', ADMIN, '--measurements', build]);
  assert.equal(none.code, 2);
  assert.match(none.stderr, /has no Measurements\.PCR0/);
});

test('usage errors exit 2 naming the flag; an unreadable file too', (t) => {
  const dir = tempDir(t, 'cloister-kms-policy-');
  for (const [args, msg] of [
    [['policy', '--role', ROLE, '--admin', ADMIN], /give the measurements to pin/],
    [['policy', '--role', ROLE, '--admin', ADMIN, '--pcr', '0=abc'], /--pcr 0 must be 96 hex characters/],
    [['policy', '--role', ROLE, '--admin', ADMIN, '--pcr', PCR0], /--pcr takes N=HEX/],
    [['policy', '--admin', ADMIN, '--image-sha384', PCR0], /--role and --admin are required/],
    [['policy', '--lint', join(dir, 'missing.json')], /cannot read .*missing\.json: ENOENT/],
    [['policy', '--lint', 'x.json', '--role', ROLE], /--lint takes no --role/],
    [['policy', '--bogus'], /Unknown option '--bogus'/],
    [['rotate'], /unknown subcommand 'rotate'/],
  ] as Array<[string[], RegExp]>) {
    const r = cli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, msg);
    assert.match(r.stderr, /usage: cloister kms policy/);
  }
  const help = cli(['policy', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /--lint FILE/);
});
