// Boot-time secrets through the real `cloister enclave` (dist/cli.js) in its own network and mount
// namespaces (`unshare -n -m`: only loopback, a tmpfs of its own), as the enclave has them:
//   app (uid 4242) <- env / RAM files / ingress TLS <- cloister: egress proxy -> emulated vsock
//     -> [unshare -n: egress relay -> KMS emulator, S3 / SSM / Secrets Manager stand-ins]
// The software NSM signs the Recipient documents with this enclave's PCR0; the KMS emulator enforces
// the key policies' PCR0 conditions. Everything cloister says (console, status stream, metrics) is
// searched for the plaintexts planted in the secrets.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { CreateKeyCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { startKmsEmulator } from '../../../src/kms-emulator/server.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { loadOrCreateRoot } from '../../../src/nsm/software.ts';
import { WORLD_CREDS } from '../../helpers/aws-fakes.ts';
import { writeSelfSigned } from '../../helpers/fixtures/tls.ts';
import {
  connectPort,
  type Enclave,
  readStatus,
  startEnclave,
  waitUntil,
} from '../../helpers/supervisor-harness.ts';

const PCR0 = 'a7'.repeat(48);
const APP_UID = 4242;
// Planted plaintexts: binary (NUL, bytes that are not UTF-8) and a password.
const BINARY = Buffer.from([
  0x00, 0x9f, 0xff, 0x00, 0x10, 0xc3, 0x28, 0x53, 0x45, 0x43, 0x52, 0x45, 0x54, 0xfe,
]);
const PASSWORD = 'correct horse battery staple 7f3a';
const CONTEXT = { app: 'boot-secrets-e2e' };
/** The enclave's own credentials (what IMDS gives it on EC2). */
const CREDS_ENV = {
  AWS_ACCESS_KEY_ID: WORLD_CREDS.accessKeyId,
  AWS_SECRET_ACCESS_KEY: WORLD_CREDS.secretAccessKey,
  AWS_EC2_METADATA_DISABLED: 'true',
};
const sha = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

let dir: string;
let conf: { cert: string; keyPemBody: string };
let world: { proc: ChildProcess; out: () => string; urls: Record<string, string>; vsockDir: string };
const ct: Record<string, string> = {};

/** The app: digests (never the values) of what it got, then an HTTP server on 8443 behind cloister's TLS. */
const APP = `
const fs = require('fs'), c = require('crypto'), http = require('http');
const h = (b) => c.createHash('sha256').update(b).digest('hex');
const dir = process.env.CLOISTER_RAM_DIR;
const out = { uid: process.getuid(), dir, env: {}, files: {}, fsType: fs.statfsSync(dir).type };
for (const n of ['S_INLINE', 'S_FILE', 'S_S3', 'S_SSM', 'S_SM']) out.env[n] = h(Buffer.from(process.env[n] || '', 'base64'));
out.env.PASSWORD = h(process.env.PASSWORD || '');
for (const f of ['inline.bin', 'file.bin', 's3.bin', 'ssm.bin', 'sm.bin', 'pw/password']) {
  const st = fs.statSync(dir + '/' + f);
  out.files[f] = { sha: h(fs.readFileSync(dir + '/' + f)), mode: st.mode & 0o777, uid: st.uid, gid: st.gid };
}
const first = !fs.existsSync(process.env.MARKER);
if (first) fs.writeFileSync(process.env.MARKER, '1');
console.log('RESULT ' + JSON.stringify(out));
if (first) process.exit(3);
http.createServer((q, r) => r.end('over the secret key')).listen(8443, '127.0.0.1');
`;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'cloister-secrets-e2e-'));
  chmodSync(dir, 0o755); // the app's uid must reach the RAM directory under it
  const nsmState = join(dir, 'nsm');
  await loadOrCreateRoot(nsmState);
  const rootPem = join(nsmState, 'root.pem');
  // Keys and ciphertexts, made through the emulator's API on the state directory the world will serve.
  const kmsState = join(dir, 'kms');
  const emu = await startKmsEmulator({
    stateDir: kmsState,
    credentials: [WORLD_CREDS],
    logger: createLogger({ level: 'silent' }),
  });
  const kms = new KMSClient({
    region: 'us-east-1',
    endpoint: emu.url,
    credentials: WORLD_CREDS,
    maxAttempts: 1,
  });
  const key = async (pcr0: string) => {
    const Policy = JSON.stringify({
      Statement: [
        { Effect: 'Allow', Principal: { AWS: '*' }, Action: ['kms:Encrypt'], Resource: '*' },
        {
          Effect: 'Allow',
          Principal: { AWS: '*' },
          Action: 'kms:Decrypt',
          Resource: '*',
          Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:PCR0': pcr0 } },
        },
      ],
    });
    return (await kms.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;
  };
  const enc = async (k: string, p: Buffer | string) =>
    Buffer.from(
      (
        await kms.send(
          new EncryptCommand({ KeyId: k, Plaintext: Buffer.from(p), EncryptionContext: CONTEXT }),
        )
      ).CiphertextBlob!,
    ).toString('base64');
  const good = await key(PCR0);
  const other = await key('b8'.repeat(48));
  const tls = writeSelfSigned(join(dir, 'key.pem'), join(dir, 'cert.pem'));
  ct.binary = await enc(good, BINARY);
  ct.password = await enc(good, PASSWORD);
  ct.tlsKey = await enc(good, tls.key);
  ct.otherPcr = await enc(other, PASSWORD);
  rmSync(join(dir, 'key.pem'));
  conf = { cert: tls.cert, keyPemBody: tls.key.split('\n')[1]! };
  kms.destroy();
  await emu.close();

  const content = join(dir, 'content.json');
  writeFileSync(
    content,
    JSON.stringify({
      s3: { 'boot/secret.bin': ct.binary },
      ssm: { '/boot/secret': ct.binary },
      secretsmanager: { 'boot/secret': { SecretBinary: ct.binary } },
    }),
  );
  const vsockDir = join(dir, 'vsock');
  mkdirSync(vsockDir);
  let out = '';
  const proc = spawn(
    'unshare',
    [
      '-n',
      process.execPath,
      '--import',
      'tsx',
      'test/helpers/fixtures/secrets-world.ts',
      vsockDir,
      kmsState,
      rootPem,
      content,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  const ready = await waitUntil('the world to be ready', () => /^READY (.*)$/m.exec(out)?.[1], 30_000);
  world = { proc, out: () => out, urls: JSON.parse(ready), vsockDir };
});

after(async () => {
  world?.proc.kill('SIGTERM');
  rmSync(dir, { recursive: true, force: true });
});

function manifest(allow: string, tls = true): string {
  return `version: v1
name: boot-secrets
target: boot-secrets:latest
sources:
  app: app:latest
egress:
  allow: ["${allow}"]
kms_proxy:
  listen_port: 9999
  endpoints:
    us-east-1: ${world.urls.kms}
${tls ? `ingress:\n  - listen_port: 8443\n    tls: { key_file: tls/key.pem.enc, cert_file: ${join(dir, 'cert.pem')} }\n` : ''}`;
}

function settings(secrets: string, app = 'restart: never'): string {
  return `app:
  uid: ${APP_UID}
  gid: ${APP_UID}
  ${app}
log:
  level: trace
api:
  metrics_port: 9100
ram_dir:
  path: ${join(dir, `ram-${Math.random().toString(36).slice(2)}`)}
nsm:
  kind: software
  state_dir: ${join(dir, 'nsm')}
  pcrs:
    "0": "${PCR0}"
secrets:
${secrets}`;
}

const entry = (name: string, source: string, targets: string, more = '') =>
  `  - name: ${name}\n    source: ${source}\n    region: us-east-1\n    encryption_context: { app: ${CONTEXT.app} }\n    targets: ${targets}\n${more}`;

/** The three fetched sources, each to the targets `targets(kind)` gives. */
function fetchedEntries(targets: (kind: 'S3' | 'SSM' | 'SM') => string): string {
  const { s3, ssm, secretsmanager } = world.urls;
  return [
    entry('from-s3', `{ s3: { bucket: boot, key: secret.bin }, endpoint: "${s3}" }`, targets('S3')),
    entry('from-ssm', `{ ssm: { name: /boot/secret }, endpoint: "${ssm}" }`, targets('SSM')),
    entry('from-sm', `{ secretsmanager: { id: boot/secret }, endpoint: "${secretsmanager}" }`, targets('SM')),
  ].join('');
}

function allSecrets(): string {
  return [
    entry('inline', `{ inline: "${ct.binary}" }`, '{ env: S_INLINE, env_base64: true, file: inline.bin }'),
    entry('from-file', '{ file: ct.bin }', '{ env: S_FILE, env_base64: true, file: file.bin }'),
    fetchedEntries((k) => `{ env: S_${k}, env_base64: true, file: ${k.toLowerCase()}.bin }`),
    entry(
      'password',
      `{ inline: "${ct.password}" }`,
      '{ env: PASSWORD, file: pw/password, file_mode: "0440" }',
    ),
    entry('tls-key', '{ file: tls/key.pem.enc }', '{ ingress_tls: 8443 }'),
  ].join('');
}

/** The config dir's extra files: the encrypted TLS key and a ciphertext file, as an image would hold them. */
const confFiles = () => ({
  'tls/key.pem.enc': Buffer.from(ct.tlsKey!, 'base64'),
  'ct.bin': Buffer.from(ct.binary!, 'base64'),
});

/** Sends one HTTP/1.1 request (Connection: close) on `sock` and reads the whole answer. */
function exchange(sock: Socket | TLSSocket, host: string, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      text += d;
    });
    sock.on('end', () => resolve(text));
    sock.on('error', reject);
    sock.write(`GET ${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  });
}

/** `cloister enclave` as root in `unshare -n -m` (its own tmpfs), on the world's vsock directory. */
function startSecretsEnclave(
  t: import('node:test').TestContext,
  o: { app: string[]; manifest: string; settings: string; env?: Record<string, string> },
): Enclave {
  return startEnclave(t, {
    ...o,
    noBootstrap: false,
    mountNs: true,
    vsockDir: world.vsockDir,
    env: { ...CREDS_ENV, ...o.env },
    confFiles: confFiles(),
  });
}

/** Every planted plaintext, in each form it could leak in. */
function assertNoPlaintext(where: string, text: string): void {
  const needles = [
    BINARY.toString('hex'),
    BINARY.toString('base64'),
    BINARY.subarray(7).toString('latin1'),
    PASSWORD,
    Buffer.from(PASSWORD).toString('base64'),
    Buffer.from(PASSWORD).toString('hex'),
    conf.keyPemBody,
  ];
  for (const n of needles)
    assert.ok(!text.includes(n), `${where} contains a planted plaintext (${n.slice(0, 12)}...)`);
}

test('every source reaches env and RAM file (exact bytes, 0400, app uid, tmpfs); the TLS key serves ingress; restarts reuse them; no plaintext in logs, status or metrics', async (t) => {
  // Where the app (uid 4242) notes its first run.
  mkdirSync(join(dir, 'app'), { mode: 0o777 });
  chmodSync(join(dir, 'app'), 0o777);
  const marker = join(dir, 'app', 'first-run');
  const e = startSecretsEnclave(t, {
    app: [process.execPath, '-e', APP],
    manifest: manifest('127.0.0.1'),
    settings: settings(allSecrets(), 'restart: on-failure\n  restart_backoff_ms: 100'),
    env: { MARKER: marker },
  });
  const status = await readStatus(t, e);
  const results = await waitUntil(
    () => `two RESULT lines (first run and restart); console:\n${e.stdout().slice(-3000)}`,
    () => {
      const r = e.stdout().match(/^RESULT .*$/gm);
      return r && r.length >= 2 ? r.map((l) => JSON.parse(l.slice(7))) : undefined;
    },
    60_000,
  );
  const [first, second] = results;
  const bin = sha(BINARY);
  assert.equal(first.uid, APP_UID);
  assert.equal(first.fsType, 0x01021994, 'the RAM directory is a tmpfs');
  assert.deepEqual(first.env, {
    S_INLINE: bin,
    S_FILE: bin,
    S_S3: bin,
    S_SSM: bin,
    S_SM: bin,
    PASSWORD: sha(PASSWORD),
  });
  for (const f of ['inline.bin', 'file.bin', 's3.bin', 'ssm.bin', 'sm.bin']) {
    assert.deepEqual(first.files[f], { sha: bin, mode: 0o400, uid: APP_UID, gid: APP_UID }, f);
  }
  assert.deepEqual(first.files['pw/password'], {
    sha: sha(PASSWORD),
    mode: 0o440,
    uid: APP_UID,
    gid: APP_UID,
  });
  // The restarted app got the same values, without a second fetch: secrets are decrypted once per start.
  assert.deepEqual(second, first);
  await status.waitFor(['running']);
  const reqs = world.out().match(/^REQ .*$/gm) ?? [];
  assert.deepEqual(
    reqs.map((l) => JSON.parse(l.slice(4)).service).sort(),
    ['s3', 'secretsmanager', 'ssm'],
    'one fetch per fetched source, signed for its service',
  );

  // Ingress 8443: cloister terminates TLS with the decrypted key.
  const sock = await connectPort(t, e, 8443);
  const tls = tlsConnect({ socket: sock, ca: conf.cert, servername: 'localhost' });
  await new Promise((resolve, reject) => tls.once('secureConnect', resolve).once('error', reject));
  const body = await exchange(tls, 'localhost', '/');
  assert.match(body, /over the secret key$/);

  const metrics = await exchange(await connectPort(t, e, 9100), 'x', '/metrics');
  assert.match(metrics, /cloister_/);
  assertNoPlaintext('the console (cloister log at trace level and the app output)', e.stdout() + e.stderr());
  assertNoPlaintext('the status stream', status.lines.join('\n'));
  assertNoPlaintext('the metrics', metrics);
});

test('a key bound to another PCR0 stops the start: fatal, naming the secret and AccessDeniedException, after the restart policy gave up', async (t) => {
  const e = startSecretsEnclave(t, {
    app: [process.execPath, '-e', 'console.log("RESULT started")'],
    manifest: manifest('127.0.0.1', false),
    settings: settings(
      entry('db-password', `{ inline: "${ct.otherPcr}" }`, '{ env: DB_PASSWORD }'),
      'restart: on-failure\n  restart_backoff_ms: 50\n  max_restarts: 1',
    ),
  });
  const status = await readStatus(t, e);
  const fatal = await status.waitFor(['fatal'], 60_000);
  assert.match(String(fatal.error), /secret db-password: KMS Decrypt failed: AccessDeniedException/);
  const restarting = status.statuses.find((s) => s.status === 'restarting');
  assert.ok(restarting, `a retry first: ${status.lines.join('\n')}`);
  assert.match(String(restarting.error), /secret db-password: KMS Decrypt failed: AccessDeniedException/);
  assert.ok(!e.stdout().includes('RESULT'), 'the app never started');
  assertNoPlaintext('the console', e.stdout() + e.stderr());
});

test('S3, SSM and Secrets Manager endpoints the egress policy does not allow: the start fails with CLO_ERR_EGRESS_DENIED, nothing fetched', async (t) => {
  const kmsAuthority = new URL(world.urls.kms!).host;
  const before = (world.out().match(/^REQ /gm) ?? []).length;
  const e = startSecretsEnclave(t, {
    app: [process.execPath, '-e', 'console.log("RESULT started")'],
    manifest: manifest(kmsAuthority, false),
    settings: settings(fetchedEntries((k) => `{ env: ${k}, env_base64: true }`)),
  });
  const status = await readStatus(t, e);
  const fatal = String((await status.waitFor(['fatal'], 60_000)).error);
  for (const n of ['from-s3', 'from-ssm', 'from-sm'])
    assert.match(fatal, new RegExp(`secret ${n}: cannot read its ciphertext`));
  // The log lines (one per secret, with the egress proxy's code) reach the console echo after the status.
  await waitUntil(
    () => `the three refusals in the log:\n${e.stdout().slice(-3000)}`,
    () => {
      const lines = e
        .stdout()
        .split('\n')
        .filter((l) => l.includes('"msg":"boot-time secret failed"'));
      return lines.length === 3 && lines.every((l) => l.includes('"reason":"CLO_ERR_EGRESS_DENIED"'))
        ? true
        : undefined;
    },
  );
  assert.equal((world.out().match(/^REQ /gm) ?? []).length, before, 'no request reached the stand-ins');
});
