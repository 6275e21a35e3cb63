// The emulator enforces what the linter says. Policies printed by the real `cloister kms policy` process
// are put on a key in the KMS emulator; calls go through the real path (SDK -> KMS proxy -> egress proxy ->
// emulated vsock -> relay -> emulator) as the enclave's role session, and directly as the role and as the
// administrator. A wrong PCR0 is AccessDenied by the Deny the linter relies on; a leak the linter reports
// (the AWS default statement added) is a Decrypt the emulator really allows.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';
import {
  CreateKeyCommand,
  DecryptCommand,
  EncryptCommand,
  KMSClient,
  PutKeyPolicyCommand,
} from '@aws-sdk/client-kms';
import { lintPolicy } from '../../../src/key-policy/lint.ts';
import { DIST_CLI } from '../../helpers/build-outputs.ts';
import { PCR0, PROXY_CREDS, REGION, startHarness } from '../../helpers/kms-harness.ts';

const ACCOUNT = '111122223333';
const ROLE = `arn:aws:iam::${ACCOUNT}:role/enclave-role`;
const ADMIN = { accessKeyId: 'AKIDKEYADMIN', secretAccessKey: 'key-admin-secret' };
const ADMIN_ARN = `arn:aws:iam::${ACCOUNT}:user/${ADMIN.accessKeyId}`;

function printedPolicy(pcr0: string): string {
  const r = spawnSync(
    process.execPath,
    [DIST_CLI, 'kms', 'policy', '--role', ROLE, '--admin', ADMIN_ARN, '--image-sha384', pcr0],
    { encoding: 'utf8', timeout: 30_000 },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout;
}

const denied = (action: string) => (err: Error) => {
  assert.equal(err.name, 'AccessDeniedException');
  assert.match(err.message, new RegExp(`not authorized to perform: kms:${action}`));
  return true;
};

test('a printed policy: wrong PCR0 denied through the proxy, right PCR0 decrypts, nobody decrypts without a document', async (t) => {
  const h = await startHarness({
    // The proxy's credentials are the instance role's session, as IMDS gives them on EC2.
    emulatorCredentials: [
      { ...PROXY_CREDS, principal: `arn:aws:sts::${ACCOUNT}:assumed-role/enclave-role/i-0123` },
      ADMIN,
    ],
  });
  t.after(() => h.close());
  const admin = new KMSClient({
    region: REGION,
    endpoint: h.emulator.url,
    credentials: ADMIN,
    maxAttempts: 1,
  });
  t.after(() => admin.destroy());
  const asRole = h.direct; // the role's own credentials, straight to KMS: no attestation document

  const wrong = printedPolicy('0f'.repeat(48));
  assert.equal(lintPolicy(wrong).ok, true, 'the linter accepts what cloister kms policy prints');
  const key = (await admin.send(new CreateKeyCommand({ Policy: wrong }))).KeyMetadata!.KeyId!;
  const sealed = await admin.send(new EncryptCommand({ KeyId: key, Plaintext: Buffer.from('only PCR0') }));
  const decrypt = () => new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob });

  // The enclave's document carries another PCR0: the explicit Deny answers.
  await assert.rejects(h.viaProxy.send(decrypt()), (err: Error) => {
    denied('Decrypt')(err);
    assert.match(err.message, /explicit deny in the key policy \(DenyPlaintextUnlessImageSha384\)/);
    return true;
  });

  await admin.send(
    new PutKeyPolicyCommand({ KeyId: key, PolicyName: 'default', Policy: printedPolicy(PCR0) }),
  );
  const opened = await h.viaProxy.send(decrypt());
  assert.equal(Buffer.from(opened.Plaintext!).toString(), 'only PCR0');
  await assert.rejects(asRole.send(decrypt()), denied('Decrypt'));
  await assert.rejects(admin.send(decrypt()), denied('Decrypt'));

  // The linter's leak is the emulator's: with AWS's default statement added and the Deny statements
  // removed, the role decrypts with no document at all.
  const leaky = JSON.parse(printedPolicy(PCR0));
  leaky.Statement = [
    {
      Sid: 'Enable IAM User Permissions',
      Effect: 'Allow',
      Principal: { AWS: `arn:aws:iam::${ACCOUNT}:root` },
      Action: 'kms:*',
      Resource: '*',
    },
    ...leaky.Statement.filter((s: { Effect: string }) => s.Effect === 'Allow'),
  ];
  const report = lintPolicy(JSON.stringify(leaky));
  assert.ok(
    report.findings.some((f) => f.kind === 'leak' && f.statements.includes('Enable IAM User Permissions')),
  );
  await admin.send(
    new PutKeyPolicyCommand({ KeyId: key, PolicyName: 'default', Policy: JSON.stringify(leaky) }),
  );
  const leaked = await asRole.send(decrypt());
  assert.equal(Buffer.from(leaked.Plaintext!).toString(), 'only PCR0');
});
