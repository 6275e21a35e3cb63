// loadSecrets (src/secrets/load.ts) on the real KMS path, in one process: the software NSM signs the
// Recipient documents, the KMS emulator checks the key policies' PCR0 conditions, S3 / SSM / Secrets
// Manager are local servers speaking their wire formats (test/helpers/aws-fakes.ts), and every call goes
// through the egress proxy and relay over emulated vsock (test/helpers/kms-harness.ts).
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { after, before, test } from 'node:test';
import { CreateKeyCommand, EncryptCommand } from '@aws-sdk/client-kms';
import type { SecretSource, SecretSpec } from '../../../src/config/types.ts';
import { startEgressProxy } from '../../../src/egress/proxy.ts';
import { isSecretError, type SecretError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { planEgress } from '../../../src/plan/index.ts';
import { loadSecrets, type SecretsDeps } from '../../../src/secrets/load.ts';
import { LazyRamDir } from '../../../src/system/ram-dir.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { type FakeAws, startFakeAws } from '../../helpers/aws-fakes.ts';
import { makeConfig } from '../../helpers/egress-fixture.ts';
import {
  type Harness,
  PCR0,
  PROXY_CREDS,
  REGION,
  secretsPlan,
  startHarness,
} from '../../helpers/kms-harness.ts';

// NUL, bytes that are not UTF-8, a newline: what an env target can carry only as base64.
const BINARY = Buffer.from([0x00, 0xff, 0xfe, 0x0a, 0x80, 0x41, 0x00, 0xc3, 0x28, 0x9d]);
const TEXT = 'pässwörd with spaces';
const CONTEXT = { app: 'secrets-test' };

let h: Harness;
let fakes: FakeAws;
let goodKey: string;
let otherPcrKey: string;
const lines: string[] = [];

async function createKey(pcr0: string): Promise<string> {
  const Policy = JSON.stringify({
    Statement: [
      { Effect: 'Allow', Principal: { AWS: '*' }, Action: ['kms:Encrypt', 'kms:DescribeKey'], Resource: '*' },
      {
        Effect: 'Allow',
        Principal: { AWS: '*' },
        Action: 'kms:Decrypt',
        Resource: '*',
        Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:ImageSha384': pcr0 } },
      },
    ],
  });
  return (await h.direct.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;
}

async function encrypt(keyId: string, plaintext: Buffer | string): Promise<Buffer> {
  const out = await h.direct.send(
    new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from(plaintext), EncryptionContext: CONTEXT }),
  );
  return Buffer.from(out.CiphertextBlob!);
}

let ct: { binary: Buffer; text: Buffer; otherPcr: Buffer };

before(async () => {
  h = await startHarness({ logLines: lines });
  goodKey = await createKey(PCR0);
  otherPcrKey = await createKey('d2'.repeat(48));
  ct = {
    binary: await encrypt(goodKey, BINARY),
    text: await encrypt(goodKey, TEXT),
    otherPcr: await encrypt(otherPcrKey, BINARY),
  };
  fakes = await startFakeAws(
    {
      s3: { 'boot/secret.bin': ct.binary },
      ssm: { '/boot/secret': ct.binary.toString('base64') },
      secretsmanager: {
        'boot-bin': { SecretBinary: ct.binary },
        'boot-str': { SecretString: ct.text.toString('base64') },
      },
    },
    PROXY_CREDS,
  );
});

after(async () => {
  await fakes?.close();
  await h?.close();
});

function spec(
  name: string,
  source: SecretSource,
  targets: Partial<SecretSpec['targets']>,
  extra: Partial<SecretSpec> = {},
): SecretSpec {
  return {
    name,
    source,
    encryption_context: CONTEXT,
    region: REGION,
    targets: { env_base64: false, file_mode: 0o400, ...targets },
    required: true,
    ...extra,
  };
}

const plan = (secrets: SecretSpec[]) => secretsPlan(h, secrets);

function deps(ramDir: LazyRamDir, egress = h.egress): SecretsDeps {
  return {
    nsm: h.nsm,
    egress,
    logger: createLogger({ level: 'trace', destination: { write: (l: string) => void lines.push(l) } }),
    ramDir,
    env: { ...h.proxyEnv },
  };
}

test('every source reaches env and file with the exact bytes, files 0400 on a RAM file system', async (t) => {
  const ram = new LazyRamDir({ path: null, mount: 'never' });
  t.after(() => ram.close());
  const { urls } = fakes;
  const sources: Record<string, SecretSource> = {
    inline: { kind: 'inline', ciphertext: ct.binary.toString('base64') },
    s3: { kind: 's3', bucket: 'boot', key: 'secret.bin', format: 'binary', endpoint: urls.s3 },
    ssm: { kind: 'ssm', name: '/boot/secret', endpoint: urls.ssm },
    sm: { kind: 'secretsmanager', id: 'boot-bin', endpoint: urls.secretsmanager },
  };
  const specs = Object.entries(sources).map(([n, source]) =>
    spec(
      `s-${n}`,
      source,
      { env: `S_${n.toUpperCase()}`, env_base64: true, file: `dir/${n}.bin` },
      { key_id: goodKey },
    ),
  );
  specs.push(
    spec(
      's-text',
      { kind: 'secretsmanager', id: 'boot-str', endpoint: urls.secretsmanager },
      { env: 'S_TEXT' },
    ),
  );
  const before = fakes.requests.length;
  const ready = await loadSecrets(plan(specs), deps(ram));
  for (const n of Object.keys(sources)) {
    assert.deepEqual(Buffer.from(ready.env[`S_${n.toUpperCase()}`]!, 'base64'), BINARY, n);
    const file = ready.files.find((f) => f.endsWith(`/dir/${n}.bin`))!;
    assert.deepEqual(readFileSync(file), BINARY, n);
    assert.equal(statSync(file).mode & 0o777, 0o400);
  }
  assert.equal(ready.env.S_TEXT, TEXT);
  assert.equal((await ram.get()).fs, 'tmpfs');
  // Each fetch was signed with the enclave's credentials for its own service and region.
  const seen = fakes.requests.slice(before);
  assert.deepEqual(seen.map((r) => [r.service, r.signedFor, r.region, r.accessKeyId]).sort(), [
    ['s3', 's3', REGION, PROXY_CREDS.accessKeyId],
    ['secretsmanager', 'secretsmanager', REGION, PROXY_CREDS.accessKeyId],
    ['secretsmanager', 'secretsmanager', REGION, PROXY_CREDS.accessKeyId],
    ['ssm', 'ssm', REGION, PROXY_CREDS.accessKeyId],
  ]);
  assert.ok(
    seen.some((r) => r.what === 'AmazonSSM.GetParameter {"Name":"/boot/secret","WithDecryption":false}'),
  );
  assert.ok(seen.some((r) => r.what === '/boot/secret.bin'));
});

test('a key bound to another PCR0: the start fails naming the secret and AccessDeniedException', async (t) => {
  const ram = new LazyRamDir({ path: null, mount: 'never' });
  t.after(() => ram.close());
  const err = await loadSecrets(
    plan([
      spec('db-password', { kind: 'inline', ciphertext: ct.otherPcr.toString('base64') }, { env: 'DB' }),
    ]),
    deps(ram),
  ).then(
    () => assert.fail('resolved'),
    (e: unknown) => e,
  );
  assert.ok(isSecretError(err));
  assert.equal(err.code, 'CLO_ERR_SECRET_DECRYPT');
  assert.equal(err.secret, 'db-password');
  assert.equal(err.reason, 'AccessDeniedException');
  assert.match(err.message, /^secret db-password: KMS Decrypt failed: AccessDeniedException/);
});

test('an optional secret that fails is skipped with its code; the required ones still arrive', async (t) => {
  const ram = new LazyRamDir({ path: null, mount: 'never' });
  t.after(() => ram.close());
  const ready = await loadSecrets(
    plan([
      spec('wanted', { kind: 'inline', ciphertext: ct.text.toString('base64') }, { env: 'WANTED' }),
      spec(
        'missing',
        { kind: 's3', bucket: 'boot', key: 'nope', format: 'binary', endpoint: fakes.urls.s3 },
        { env: 'MISSING' },
        { required: false },
      ),
      spec(
        'denied',
        { kind: 'inline', ciphertext: ct.otherPcr.toString('base64') },
        { env: 'DENIED' },
        { required: false },
      ),
    ]),
    deps(ram),
  );
  assert.deepEqual(Object.keys(ready.env), ['WANTED']);
  assert.deepEqual(
    ready.skipped.sort((a, b) => a.name.localeCompare(b.name)),
    [
      { name: 'denied', code: 'CLO_ERR_SECRET_DECRYPT', reason: 'AccessDeniedException' },
      { name: 'missing', code: 'CLO_ERR_SECRET_SOURCE', reason: 'NoSuchKey' },
    ],
  );
  assert.equal(ram.opened, false, 'no file target: nothing created');
});

test('a fetch the egress policy does not allow is refused by the egress proxy, for each service', async (t) => {
  // A second egress proxy on the same relay whose policy allows the KMS emulator only.
  const kmsPort = Number(new URL(h.emulator.url).port);
  const proxy = await startEgressProxy(
    planEgress(makeConfig({ allow: [`127.0.0.1:${kmsPort}`], proxy_port: 0 }))!,
    {
      transport: new EmulatedTransport(`${h.dir}/vsock`, 16),
      logger: createLogger({ level: 'silent' }),
    },
  );
  t.after(() => proxy.close());
  const ram = new LazyRamDir({ path: null, mount: 'never' });
  t.after(() => ram.close());
  const { urls } = fakes;
  const before = fakes.requests.length;
  const err = await loadSecrets(
    plan([
      spec(
        'from-s3',
        { kind: 's3', bucket: 'boot', key: 'secret.bin', format: 'binary', endpoint: urls.s3 },
        { env: 'A', env_base64: true },
      ),
      spec(
        'from-ssm',
        { kind: 'ssm', name: '/boot/secret', endpoint: urls.ssm },
        { env: 'B', env_base64: true },
      ),
      spec(
        'from-sm',
        { kind: 'secretsmanager', id: 'boot-bin', endpoint: urls.secretsmanager },
        { env: 'C', env_base64: true },
      ),
      // KMS itself is allowed: an inline secret still arrives... but the required ones above fail the start.
      spec('inline', { kind: 'inline', ciphertext: ct.text.toString('base64') }, { env: 'D' }),
    ]),
    deps(ram, { host: '127.0.0.1', port: proxy.address.port }),
  ).then(
    () => assert.fail('resolved'),
    (e: unknown) => e as SecretError,
  );
  assert.equal(err.code, 'CLO_ERR_SECRET_SOURCE');
  assert.equal(err.reason, 'CLO_ERR_EGRESS_DENIED');
  assert.match(err.message, /^3 boot-time secrets failed: /);
  for (const n of ['from-s3', 'from-ssm', 'from-sm'])
    assert.match(err.message, new RegExp(`secret ${n}: cannot read its ciphertext`));
  assert.equal(fakes.requests.length, before, 'nothing reached the servers');
});

test('a raw env target refuses a plaintext with NUL or non-UTF-8 bytes (env_base64 carries it)', async (t) => {
  const ram = new LazyRamDir({ path: null, mount: 'never' });
  t.after(() => ram.close());
  await assert.rejects(
    loadSecrets(
      plan([spec('bin', { kind: 'inline', ciphertext: ct.binary.toString('base64') }, { env: 'BIN' })]),
      deps(ram),
    ),
    { code: 'CLO_ERR_SECRET_TARGET', secret: 'bin', message: /NUL byte or is not UTF-8.*env_base64: true/ },
  );
});

test('source errors name the secret and AWS error: ParameterNotFound, ResourceNotFoundException, a missing file', async (t) => {
  const ram = new LazyRamDir({ path: null, mount: 'never' });
  t.after(() => ram.close());
  const cases: [SecretSource, string][] = [
    [{ kind: 'ssm', name: '/nope', endpoint: fakes.urls.ssm }, 'ParameterNotFound'],
    [
      { kind: 'secretsmanager', id: 'nope', endpoint: fakes.urls.secretsmanager },
      'ResourceNotFoundException',
    ],
    [{ kind: 'file', path: '/nonexistent/secret.enc', format: 'binary' }, 'ENOENT'],
  ];
  for (const [source, reason] of cases) {
    await assert.rejects(loadSecrets(plan([spec('x', source, { env: 'X' })]), deps(ram)), {
      code: 'CLO_ERR_SECRET_SOURCE',
      secret: 'x',
      reason,
    });
  }
});

test('no plaintext in any log line, at trace level', () => {
  const all = lines.join('\n');
  assert.ok(lines.length > 10, 'the tests above logged');
  for (const needle of [TEXT, BINARY.toString('base64'), BINARY.toString('hex'), 'pässwörd']) {
    assert.ok(!all.includes(needle), `found ${needle}`);
  }
});
