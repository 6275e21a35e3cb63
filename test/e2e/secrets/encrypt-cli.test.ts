// `cloister secrets encrypt` (dist/cli.js) against a KMS: the emulator on loopback stands in for AWS KMS
// (--endpoint), signed with the caller's credentials from the environment. The printed entry is valid
// cloister.yaml and its ciphertext decrypts to the plaintext under the given encryption context.
// (--dev is exercised by the demo: test/e2e/demo/demo.test.ts.)
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { CreateKeyCommand, DecryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { parse, stringify } from 'yaml';
import { findConfigFiles, loadConfig } from '../../../src/config/load.ts';
import { type KmsEmulator, startKmsEmulator } from '../../../src/kms-emulator/server.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { BASE_MANIFEST } from '../../helpers/config-dirs.ts';

const CREDS = { accessKeyId: 'AKIDENCRYPTCLI', secretAccessKey: 'encrypt-cli-secret' };
const PLAINTEXT = Buffer.from([0x00, 0x01, 0xfe, 0xff, 0x41, 0x0a]);
let dir: string;
let emu: KmsEmulator;
let kms: KMSClient;
let keyArn: string;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cloister-encrypt-'));
  emu = await startKmsEmulator({
    stateDir: join(dir, 'kms'),
    credentials: [CREDS],
    region: 'eu-west-1',
    logger: createLogger({ level: 'silent' }),
  });
  kms = new KMSClient({ region: 'eu-west-1', endpoint: emu.url, credentials: CREDS, maxAttempts: 1 });
  keyArn = (await kms.send(new CreateKeyCommand({}))).KeyMetadata!.Arn!;
  writeFileSync(join(dir, 'plain.bin'), PLAINTEXT);
});
after(async () => {
  kms.destroy();
  await emu.close();
  rmSync(dir, { recursive: true, force: true });
});

const CREDS_ENV = {
  PATH: process.env.PATH,
  AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
  AWS_EC2_METADATA_DISABLED: 'true',
};

/** `cloister secrets encrypt ARGS` as a child (asynchronously: the emulator answers in this process). */
function encrypt(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; input?: string } = {},
): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['dist/cli.js', 'secrets', 'encrypt', ...args], {
      env: { ...CREDS_ENV, HOME: dir, ...opts.env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    child.on('exit', (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr });
    });
    child.stdin.end(opts.input ?? '');
  });
}

test('prints a cloister.yaml entry whose inline ciphertext decrypts to the plaintext (region from the key ARN)', async () => {
  const r = await encrypt([
    ...['--key', keyArn, '--endpoint', emu.url, '--name', 'db', '--in', join(dir, 'plain.bin')],
    ...['--env', 'DB', '--env-base64', '--file', 'db/key', '--context', 'app=billing', '--optional'],
  ]);
  assert.equal(r.status, 0, r.stderr);
  const [entry] = parse(r.stdout).secrets;
  assert.deepEqual(
    { ...entry, source: Object.keys(entry.source) },
    {
      name: 'db',
      source: ['inline'],
      key_id: keyArn,
      encryption_context: { app: 'billing' },
      region: 'eu-west-1',
      targets: { env: 'DB', env_base64: true, file: 'db/key' },
      required: false,
    },
  );
  const out = await kms.send(
    new DecryptCommand({
      CiphertextBlob: Buffer.from(entry.source.inline, 'base64'),
      EncryptionContext: { app: 'billing' },
    }),
  );
  assert.deepEqual(Buffer.from(out.Plaintext!), PLAINTEXT);
  // The entry loads as it is (under a manifest with egress).
  const conf = join(dir, 'conf');
  mkdirSync(conf, { recursive: true });
  writeFileSync(
    join(conf, 'enclaver.yaml'),
    `${BASE_MANIFEST}egress:\n  allow: [kms.eu-west-1.amazonaws.com]\n`,
  );
  writeFileSync(join(conf, 'cloister.yaml'), r.stdout);
  assert.equal(loadConfig(findConfigFiles(conf)).settings.secrets[0]!.name, 'db');
  assert.ok(
    !r.stdout.includes(PLAINTEXT.toString('base64')) && !r.stderr.includes(PLAINTEXT.toString('base64')),
  );
});

test('--out writes the binary ciphertext and prints a file source; stdin is the plaintext', async () => {
  const out = join(dir, 'tls.key.enc');
  const r = await encrypt(
    ['--key', keyArn, '--endpoint', emu.url, '--name', 'tls', '--ingress-tls', '8443', '--out', out],
    { input: 'a pem key' },
  );
  assert.equal(r.status, 0, r.stderr);
  const [entry] = parse(r.stdout).secrets;
  assert.deepEqual(entry.source, { file: out });
  assert.deepEqual(entry.targets, { ingress_tls: 8443 });
  const plain = await kms.send(new DecryptCommand({ CiphertextBlob: readFileSync(out) }));
  assert.equal(Buffer.from(plain.Plaintext!).toString(), 'a pem key');
  assert.equal(stringify(parse(r.stdout)), r.stdout.replace(/\n?$/, '\n'));
});

test('a KMS refusal exits 1 naming the exception; usage mistakes exit 2', async () => {
  const missing = await encrypt([
    ...['--key', 'alias/nope', '--region', 'eu-west-1', '--endpoint', emu.url],
    ...['--name', 'x', '--env', 'X', '--in', join(dir, 'plain.bin')],
  ]);
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /^cloister secrets: KMS Encrypt refused: NotFoundException/);
  const noCreds = await encrypt(
    ['--key', keyArn, '--endpoint', emu.url, '--name', 'x', '--env', 'X', '--in', join(dir, 'plain.bin')],
    { env: { AWS_ACCESS_KEY_ID: '', AWS_SECRET_ACCESS_KEY: '' } },
  );
  assert.equal(noCreds.status, 1);
  for (const [args, why] of [
    [['--key', keyArn, '--name', 'x'], /give a target: --env, --file or --ingress-tls/],
    [['--name', 'x', '--env', 'X'], /--key is required \(or --dev\)/],
    [['--key', keyArn, '--name', 'x', '--env', '1X'], /is not an environment variable name/],
    [['--key', keyArn, '--name', 'x', '--env', 'X', '--context', 'novalue'], /--context takes KEY=VALUE/],
    [['--dev', '--name', 'x', '--env', 'X'], /--dev needs the app after `--`/],
  ] as const) {
    const r = await encrypt([...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, why);
  }
});
