// The single executable (scripts/build-binary.mjs): built once per run of this file from a snapshot of
// the tree, run with no node and no node_modules around it, and rebuilt from a second copy of the
// same sources in another directory to check that the bytes are identical (the binary is part of what
// an enclave's PCR0 measures).
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { cachedPinnedNode, DIST_CLI, NODE_VERSION, REPO } from '../helpers/build-outputs.ts';

const repo = REPO;
const BUILD_TIMEOUT_MS = 150_000;

interface Summary {
  output: string;
  arch: string;
  node: string;
  size: number;
  sha256: string;
  seconds: number;
}

let tmp: string;
let first: Summary;

// A copy of what the build reads, so that edits made to the tree while the tests run cannot make the
// two builds differ (the second copy is taken from the first), and so that the second build happens
// in a different directory.
const SOURCES = ['src', 'scripts', 'native/src', 'package.json', 'tsconfig.json', 'native/binding.gyp'];

function snapshot(dir: string, from = repo): string {
  mkdirSync(join(dir, 'native'), { recursive: true });
  for (const p of SOURCES) cpSync(join(from, p), join(dir, p), { recursive: true });
  symlinkSync(join(repo, 'node_modules'), join(dir, 'node_modules'));
  return dir;
}

function buildIn(tree: string, out: string): Summary {
  const stdout = execFileSync(process.execPath, ['scripts/build-binary.mjs', '--json', '--out', out], {
    cwd: tree,
    encoding: 'utf8',
    timeout: BUILD_TIMEOUT_MS,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Summary;
}

function readNotes(file: string): string {
  // readelf warns about gaps in the runtime's annobin notes; only the note list matters here.
  return execFileSync('readelf', ['-n', file], {
    encoding: 'utf8',
    maxBuffer: 64 << 20,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
}

function buildId(file: string): string {
  const notes = readNotes(file);
  const m = /Build ID: ([0-9a-f]+)/.exec(notes);
  assert.ok(m, `no GNU build-id note in ${file}`);
  return m[1]!;
}

before(
  () => {
    tmp = mkdtempSync(join(tmpdir(), 'cloister-binary-test-'));
    const tree = snapshot(join(tmp, 'tree-a'));
    // A fresh copy in a directory of its own, as a user would run it.
    first = buildIn(tree, join(tmp, 'bin', 'cloister'));
  },
  { timeout: BUILD_TIMEOUT_MS },
);

after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('build:binary makes one executable on the pinned Node runtime', () => {
  assert.equal(first.node, NODE_VERSION);
  assert.equal(first.arch, process.arch);
  assert.equal(readFileSync(first.output).subarray(0, 4).toString('latin1'), '\x7fELF');
  const notes = readNotes(first.output);
  assert.match(notes, /NODE_SEA_BLOB/, 'the SEA blob note is present');
  // The runtime's build-id survives stripping and injection: the binary is the pinned node, not the
  // machine's (the build verified the pinned package's SHA-256 before using it).
  const pinned = cachedPinnedNode();
  assert.ok(existsSync(pinned), `pinned runtime in the build cache: ${pinned}`);
  assert.equal(buildId(first.output), buildId(pinned));
});

test('the binary runs `cloister --version` with no node and no node_modules around it', () => {
  const empty = mkdtempSync(join(tmp, 'empty-'));
  const r = spawnSync(first.output, ['--version'], {
    cwd: empty,
    env: { PATH: empty, HOME: empty, TMPDIR: empty },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { version: string };
  assert.equal(r.stdout, `cloister ${pkg.version}\n`);
  // The embedded addon was written to a private temp dir and removed again at exit.
  assert.deepEqual(
    execFileSync('find', [empty, '-mindepth', '1'], { encoding: 'utf8' }).trim(),
    '',
    'nothing left behind in $TMPDIR',
  );
});

test('the binary re-run as `process.execPath process.argv[1] ...` (how scripts re-run themselves) works', () => {
  const r = spawnSync(first.output, [first.output, '--version'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^cloister \d+\.\d+\.\d+\n$/);
});

test('the binary ignores NODE_OPTIONS (its runtime flags are fixed at build time)', () => {
  const r = spawnSync(first.output, ['--version'], {
    env: { PATH: '/usr/bin:/bin', NODE_OPTIONS: '--require /nonexistent/inject.js' },
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^cloister \d+\.\d+\.\d+\n$/);
});

test('two builds of the same sources in different directories are byte-identical', {
  timeout: BUILD_TIMEOUT_MS,
}, () => {
  const tree = snapshot(join(tmp, 'elsewhere', 'tree-b'), join(tmp, 'tree-a'));
  const second = buildIn(tree, join(tmp, 'bin2', 'cloister'));
  assert.equal(second.size, first.size);
  assert.equal(second.sha256, first.sha256);
  process.stderr.write(
    `# binary: ${(first.size / 1e6).toFixed(1)} MB, sha256 ${first.sha256}; builds took ${first.seconds} s and ${second.seconds} s\n`,
  );
});

test('installed as odyn, the binary is the supervisor and loads its embedded addon', {
  timeout: 60_000,
}, async (t) => {
  // Enclaver installs the supervisor image's binary as /sbin/odyn and runs it with odyn's arguments.
  const dir = mkdtempSync(join(tmp, 'odyn-'));
  const odyn = join(dir, 'odyn');
  copyFileSync(first.output, odyn);
  execFileSync('chmod', ['755', odyn]);
  const usage = spawnSync(odyn, ['--help'], { encoding: 'utf8', timeout: 30_000 });
  assert.equal(usage.status, 0, usage.stderr);
  assert.match(usage.stdout, /usage: cloister enclave/);

  const cfg = join(dir, 'etc-enclaver');
  mkdirSync(cfg);
  writeFileSync(
    join(cfg, 'enclaver.yaml'),
    'version: v1\nname: odyn-test\ntarget: odyn-test:latest\nsources:\n  app: odyn-test:app\n',
  );
  const tmpd = mkdtempSync(join(dir, 'tmp-'));
  // Bootstrap brings lo up through the native addon: inside `unshare -n` (as in an enclave, a downed
  // lo and nothing else) that only works if the addon embedded in the binary was loaded.
  const child = spawn(
    'unshare',
    [
      '-n',
      odyn,
      '--config-dir',
      cfg,
      '--no-console',
      '--transport',
      'emulated',
      '--vsock-dir',
      join(dir, 'vsock'),
      '--nsm',
      'software',
      '--nsm-state',
      join(dir, 'nsm'),
      '--',
      'sh',
      '-c',
      'echo "lo-flags=$(cat /sys/class/net/lo/flags)"; ls "$TMPDIR"/cloister-native-*/; exec sleep 30',
    ],
    { env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', TMPDIR: tmpd }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => child.kill('SIGKILL'));
  let out = '';
  let err = '';
  child.stderr.on('data', (d: Buffer) => {
    err += d;
  });
  await new Promise<void>((resolveOut, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      if (out.includes('cloister_native.node')) resolveOut();
    });
    child.once('exit', (code) => reject(new Error(`supervisor exited (${code}) early:\n${out}\n${err}`)));
  });
  const flags = Number(/lo-flags=(0x[0-9a-f]+)/.exec(out)?.[1]);
  assert.equal(flags & 1, 1, `lo is up (IFF_UP) in the enclave namespace:\n${out}\n${err}`);
  // On SIGTERM (the host stopping the enclave) cloister stops the app, exits by itself (not killed by
  // the signal) and removes its temporary copy of the addon.
  const exited = new Promise<[number | null, NodeJS.Signals | null]>((r) =>
    child.once('exit', (code, signal) => r([code, signal])),
  );
  child.kill('SIGTERM');
  const [code, signal] = await exited;
  assert.equal(signal, null, err);
  assert.equal(typeof code, 'number');
  assert.deepEqual(readdirSync(tmpd), [], 'the extracted addon is removed at exit');
});

test('the binary runs `cloister dev` with the example app end to end', { timeout: 120_000 }, async (t) => {
  // What `npm run demo` does (examples/hello/demo.mjs), with the binary in place of `node dist/cli.js`:
  // dev mode, the supervisor in its own network namespace, egress, attestation, the KMS emulator, ingress.
  // The app is a Node program, run by the Node running this test; cloister itself needs none.
  const origin = createServer((req, res) => res.end(`sunny (served to ${req.headers.host}${req.url})\n`));
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', r));
  t.after(() => origin.close());
  const address = origin.address();
  assert.ok(address && typeof address === 'object');
  const app = join(repo, 'examples/hello');
  const dev = spawn(
    first.output,
    [
      'dev',
      '-f',
      join(app, 'enclaver.yaml'),
      '--state-dir',
      mkdtempSync(join(tmp, 'dev-state-')),
      '--publish',
      '0:8080',
      '--quiet',
      '--',
      process.execPath,
      join(app, 'app.mjs'),
    ],
    {
      cwd: mkdtempSync(join(tmp, 'dev-cwd-')),
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        DEMO_ORIGIN: `http://127.0.0.1:${address.port}`,
        // The app checks its attestation document with `node <CLOISTER_CLI> attest verify`.
        CLOISTER_CLI: DIST_CLI,
        AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
      },
    },
  );
  t.after(() => dev.kill('SIGKILL'));
  let out = '';
  let err = '';
  let called: Promise<{ status: number; body: string }> | undefined;
  const exited = new Promise<number | null>((r) => dev.once('exit', (code) => r(code)));
  dev.stderr.on('data', (d: Buffer) => {
    err += d;
  });
  dev.stdout.on('data', (d: Buffer) => {
    out += d;
    if (!called && out.includes('ingress ready')) {
      const url = /ingress\s+(http:\/\/\S+) -> enclave port 8080/.exec(err)?.[1];
      called = url
        ? fetch(`${url}/hello`).then(async (res) => ({ status: res.status, body: await res.text() }))
        : Promise.reject(new Error(`no ingress address printed:\n${err}`));
    }
  });
  const code = await exited;
  assert.equal(code, 0, `cloister dev exited ${code}\n--- stdout\n${out}\n--- stderr\n${err}`);
  assert.ok(called, `the app never said "ingress ready":\n${out}`);
  const res = await called;
  assert.equal(res.status, 200);
  assert.match(res.body, /^hello from inside the enclave/);
  assert.match(out, /Decrypt through the KMS proxy .* -> "/);
});

test("Dockerfile.enclave's example app runs under the binary, and the binary verifies its attestation", {
  timeout: 120_000,
}, async (t) => {
  // The image's command line (ENTRYPOINT + CMD) is `cloister enclave --config-dir /etc/enclaver -- node
  // /app/server.mjs`; here the same app and manifest run under `cloister dev` (software NSM).
  const ex = join(repo, 'examples/enclave-image');
  const state = mkdtempSync(join(tmp, 'image-state-'));
  const dev = spawn(
    first.output,
    [
      'dev',
      '-f',
      join(ex, 'enclaver.yaml'),
      '--state-dir',
      state,
      '--publish',
      '0:8080',
      '--',
      process.execPath,
      join(ex, 'server.mjs'),
    ],
    { cwd: state, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  t.after(() => dev.kill('SIGKILL'));
  let err = '';
  const exited = new Promise<number | null>((r) => dev.once('exit', (code) => r(code)));
  const banner = new Promise<{ url: string; root: string }>((resolveBanner, reject) => {
    dev.stderr.on('data', (d: Buffer) => {
      err += d;
      const url = /ingress\s+(http:\/\/\S+) -> enclave port 8080/.exec(err)?.[1];
      const root = /NSM root\s+(\S+)/.exec(err)?.[1];
      if (url && root) resolveBanner({ url, root });
    });
    dev.once('exit', (code) => reject(new Error(`cloister dev exited (${code}) early:\n${err}`)));
  });
  dev.stdout.resume();
  const { url, root } = await banner;
  const nonce = randomBytes(16).toString('hex');
  // Ingress holds the connection until the app listens, so one request is enough.
  const res = await fetch(`${url}/attestation?nonce=${nonce}`);
  const doc = Buffer.from(await res.arrayBuffer());
  assert.equal(res.status, 200, doc.toString());
  const verify = spawnSync(first.output, ['attest', 'verify', '--root', root, '--nonce', nonce, '-'], {
    input: doc,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(verify.status, 0, verify.stderr);
  assert.match(verify.stdout, new RegExp(nonce));
  dev.kill('SIGINT');
  assert.notEqual(await exited, null, 'cloister dev exits on Ctrl-C');
});

function onPath(cmd: string): boolean {
  return spawnSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' }).status === 0;
}

const crossArch = process.arch === 'x64' ? 'arm64' : 'x64';
const crossTriple = crossArch === 'arm64' ? 'aarch64-linux-gnu' : 'x86_64-linux-gnu';
const qemu = crossArch === 'arm64' ? 'qemu-aarch64' : 'qemu-x86_64';
const crossTools = [`${crossTriple}-gcc`, `${crossTriple}-strip`, qemu];
const missing = crossTools.filter((t) => !onPath(t));

test(`the ${crossArch} binary cross-builds and runs \`--version\` (under ${qemu})`, {
  timeout: BUILD_TIMEOUT_MS,
  skip:
    missing.length > 0
      ? `needs ${missing.join(', ')} (apt-get install gcc-${crossTriple.replace(/_/g, '-')} qemu-user)`
      : false,
}, () => {
  const out = join(tmp, 'cross', 'cloister');
  const stdout = execFileSync(
    process.execPath,
    ['scripts/build-binary.mjs', '--json', '--arch', crossArch, '--out', out],
    {
      cwd: join(tmp, 'tree-a'),
      encoding: 'utf8',
      timeout: BUILD_TIMEOUT_MS,
      stdio: ['ignore', 'pipe', 'inherit'],
    },
  );
  const summary = JSON.parse(stdout.trim().split('\n').pop()!) as Summary;
  assert.equal(summary.arch, crossArch);
  assert.equal(summary.node, NODE_VERSION);
  const r = spawnSync(qemu, ['-L', `/usr/${crossTriple}`, out, '--version'], {
    encoding: 'utf8',
    timeout: 60_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^cloister \d+\.\d+\.\d+\n$/);
});
