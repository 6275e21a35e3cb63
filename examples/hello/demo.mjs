// `npm run demo`: the host side of the story. It starts a small web server that stands in for the
// internet, runs the demo app inside `cloister dev` (emulated enclave, software NSM, KMS emulator),
// calls the app's ingress endpoint from outside once the app says it is ready, and exits with
// cloister dev's exit code (the app's).
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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

console.log(`The host side: a web server at ${originUrl} plays the internet. Starting the enclave...\n`);
const dev = spawn(
  process.execPath,
  [
    cli,
    'dev',
    '-f',
    join(here, 'enclaver.yaml'),
    '--state-dir',
    stateDir,
    // Any free port on this machine for the app's ingress port 8080.
    '--publish',
    '0:8080',
    // cloister's own log lines (e.g. the egress denial) would interrupt the story; the app tells it.
    '--quiet',
    '--',
    process.execPath,
    join(here, 'app.mjs'),
  ],
  {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      DEMO_ORIGIN: originUrl,
      CLOISTER_CLI: cli,
      // The SDK's notice about Node 20's end of life is not part of this story.
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
);

let ingressUrl = null;
let stderrBuf = '';
dev.stderr.on('data', (d) => {
  process.stderr.write(d);
  stderrBuf += d.toString();
  ingressUrl ??= /ingress\s+(http:\/\/\S+) -> enclave port 8080/.exec(stderrBuf)?.[1] ?? null;
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
