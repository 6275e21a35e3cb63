// `npm run demo`: the host side of the story. It starts a small web server that stands in for the
// internet, prepares two boot-time secrets (a TLS key for ingress port 8443 and a password, encrypted
// with `cloister secrets encrypt --dev` under a key only this enclave's PCR0 may decrypt with), runs the
// demo app inside `cloister dev` (emulated enclave, software NSM, KMS emulator), calls the app's ingress
// endpoints from outside once the app says it is ready, and exits with cloister dev's exit code (the app's).
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse, stringify } from 'yaml';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const cli = join(root, 'dist/cli.js');

// The "internet": one page on this machine's loopback, which the manifest's egress.allow permits.
const origin = createServer((req, res) => res.end(`sunny, 21°C (served to ${req.headers.host}${req.url})\n`));
await new Promise((r) => origin.listen(0, '127.0.0.1', r));
const originUrl = `http://127.0.0.1:${origin.address().port}`;

// A fresh state dir per run unless one is given: a new software NSM root and an empty KMS.
const stateDir = process.env.DEMO_STATE_DIR ?? mkdtempSync(join(tmpdir(), 'cloister-demo-'));
const own = !process.env.DEMO_STATE_DIR;

// --- Boot-time secrets, prepared on the host side --------------------------------------------------
// The enclave's config: the example manifest plus ingress port 8443, whose TLS key is a boot-time secret
// (the manifest names the encrypted key file; cloister decrypts it in the enclave). The image would
// carry these files; here they live in the state directory.
const app = [process.execPath, join(here, 'app.mjs')];
const config = join(stateDir, 'hello-config');
mkdirSync(join(config, 'tls'), { recursive: true });
const manifest = parse(readFileSync(join(here, 'enclaver.yaml'), 'utf8'));
manifest.ingress.push({ listen_port: 8443, tls: { key_file: 'tls/key.pem.enc', cert_file: 'tls/cert.pem' } });
const manifestPath = join(config, 'enclaver.yaml');
writeFileSync(manifestPath, stringify(manifest));
// A TLS key and certificate for 127.0.0.1 (openssl): the key exists in plaintext only until it is encrypted.
const scratch = mkdtempSync(join(tmpdir(), 'cloister-demo-key-'));
try {
  execFileSync(
    'openssl',
    [
      ...['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1'],
      ...['-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'],
      ...['-keyout', join(scratch, 'key.pem'), '-out', join(config, 'tls/cert.pem')],
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
} catch (err) {
  console.log(
    `FAILED: the demo makes its TLS certificate with openssl: ${err.stderr?.toString() || err.message}`,
  );
  process.exit(1);
}
const password = randomBytes(12).toString('base64url');
/** `cloister secrets encrypt --dev`: the key is bound to the dev PCR0 of this manifest and app. */
const encrypt = (flags, input) =>
  parse(
    execFileSync(
      process.execPath,
      [
        cli,
        'secrets',
        'encrypt',
        '--dev',
        '--state-dir',
        stateDir,
        '-f',
        manifestPath,
        '--key',
        'alias/hello-demo',
        '--context',
        'app=hello',
        ...flags,
        '--',
        ...app,
      ],
      { input, encoding: 'utf8' },
    ),
  ).secrets;
const secrets = [
  ...encrypt([
    '--name',
    'demo-tls-key',
    '--ingress-tls',
    '8443',
    '--in',
    join(scratch, 'key.pem'),
    '--out',
    join(config, 'tls/key.pem.enc'),
  ]),
  ...encrypt(['--name', 'demo-password', '--env', 'DEMO_PASSWORD', '--file', 'demo/password'], password),
];
rmSync(scratch, { recursive: true, force: true });
writeFileSync(join(config, 'cloister.yaml'), stringify({ secrets }));
console.log(
  'The host side: two boot-time secrets encrypted under a KMS key only this enclave (its PCR0) may',
);
console.log(
  '  decrypt with: the TLS key of ingress port 8443 (tls/key.pem.enc) and a password (cloister.yaml).',
);
console.log(`The host side: a web server at ${originUrl} plays the internet. Starting the enclave...\n`);
const dev = spawn(
  process.execPath,
  [
    cli,
    'dev',
    '-f',
    manifestPath,
    '--state-dir',
    stateDir,
    // Any free port on this machine for the app's ingress ports 8080 and 8443.
    '--publish',
    '0:8080',
    '--publish',
    '0:8443',
    // cloister's own log lines (e.g. the egress denial) would interrupt the story; the app tells it.
    '--quiet',
    '--',
    ...app,
  ],
  {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      DEMO_ORIGIN: originUrl,
      // The app checks the password by its digest: it never prints it.
      DEMO_PASSWORD_SHA256: createHash('sha256').update(password).digest('hex'),
      CLOISTER_CLI: cli,
      // The SDK's notice about Node 20's end of life is not part of this story.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
);

let ingressUrl = null;
let tlsUrl = null;
let stderrBuf = '';
dev.stderr.on('data', (d) => {
  process.stderr.write(d);
  stderrBuf += d.toString();
  ingressUrl ??= /ingress\s+(http:\/\/\S+) -> enclave port 8080/.exec(stderrBuf)?.[1] ?? null;
  tlsUrl ??= /ingress\s+http:\/\/(\S+) -> enclave port 8443/.exec(stderrBuf)?.[1] ?? null;
});

let outBuf = '';
let called = false;
dev.stdout.on('data', (d) => {
  process.stdout.write(d);
  outBuf += d.toString();
  if (!called && outBuf.includes('ingress ready')) {
    called = true;
    callIngress();
  }
});

async function callIngress() {
  if (!ingressUrl) {
    console.log('FAILED: cloister dev did not print its ingress address');
    dev.kill('SIGTERM');
    return;
  }
  try {
    const res = await fetch(`${ingressUrl}/hello`);
    const body = await res.text();
    if (res.status !== 200 || !body.startsWith('hello from inside the enclave'))
      throw new Error(`${res.status} ${body}`);
    console.log(`   [host side] GET ${ingressUrl}/hello -> ${res.status}: ${body.trim()}`);
    // Port 8443: TLS terminated in the enclave with the key that was a boot-time secret.
    const url = `https://${tlsUrl}/hello`;
    const tls = await new Promise((resolve, reject) => {
      const req = httpsRequest(url, { ca: readFileSync(join(config, 'tls/cert.pem')) }, (r) => {
        let text = '';
        r.on('data', (c) => {
          text += c;
        });
        r.on('end', () => resolve({ status: r.statusCode, body: text }));
      });
      req.on('error', reject);
      req.end();
    });
    if (tls.status !== 200 || !tls.body.startsWith('hello from inside the enclave'))
      throw new Error(`${url}: ${tls.status} ${tls.body}`);
    console.log(
      `   [host side] GET ${url} -> ${tls.status} over TLS (certificate verified): ${tls.body.trim()}`,
    );
  } catch (err) {
    console.log(`FAILED: the ingress call from the host side failed: ${err.message}`);
    dev.kill('SIGTERM');
  }
}

const stop = () => dev.kill('SIGINT');
process.on('SIGINT', stop);
process.on('SIGTERM', stop);

const code = await new Promise((r) => dev.on('exit', (c, sig) => r(c ?? (sig ? 128 : 1))));
origin.close();
if (own) rmSync(stateDir, { recursive: true, force: true });
console.log(code === 0 ? '\nDemo finished: every check passed.' : `\nDemo failed (exit code ${code}).`);
process.exit(code);
