// What `npm pack` ships: the tarball installs into an empty directory (its install script builds the
// native addon from the shipped sources) and its `cloister` bin runs. Dependencies come from the npm
// registry, or from npm's cache when it has them.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';

const repo = resolve(import.meta.dirname, '../..');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as { name: string; version: string };

let tmp: string;
let tarball: string;
let files: string[];

function npm(args: string[], cwd: string, timeout: number): string {
  return execFileSync('npm', args, {
    cwd,
    encoding: 'utf8',
    timeout,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      npm_config_update_notifier: 'false',
      npm_config_fund: 'false',
      npm_config_audit: 'false',
    },
  });
}

before(
  () => {
    tmp = mkdtempSync(join(tmpdir(), 'cloister-pack-test-'));
    assert.ok(existsSync(join(repo, 'dist/cli.js')), 'dist/cli.js exists (`npm test` builds it first)');
    // --ignore-scripts: prepack would rebuild dist/ under the feet of other test runs; it is built already.
    const out = npm(['pack', '--json', '--ignore-scripts', '--pack-destination', tmp], repo, 60_000);
    const [info] = JSON.parse(out.slice(out.indexOf('['))) as [
      { filename: string; files: { path: string }[] },
    ];
    tarball = join(tmp, info.filename);
    files = info.files.map((f) => f.path).sort();
  },
  { timeout: 90_000 },
);

after(() => {
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

test('the tarball holds the bundle, the bin and the addon sources, and nothing else of the repo', () => {
  for (const f of ['package.json', 'README.md', 'bin/cloister.js', 'dist/cli.js', 'native/binding.gyp']) {
    assert.ok(files.includes(f), `${f} is packed`);
  }
  assert.ok(
    files.some((f) => f.startsWith('native/src/') && f.endsWith('.c')),
    'the addon sources are packed',
  );
  const stray = files.filter((f) => /^(src|test|scripts|bench|build|node_modules|native\/build)\//.test(f));
  assert.deepEqual(stray, []);
});

test('the packed tarball installs into an empty directory and its cloister bin runs', {
  timeout: 240_000,
}, () => {
  const app = join(tmp, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), '{"name":"pack-smoke","version":"1.0.0","private":true}\n');
  npm(['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], app, 220_000);

  const installed = join(app, 'node_modules', pkg.name);
  assert.ok(
    existsSync(join(installed, 'native/build/Release/cloister_native.node')),
    'the install script built the native addon',
  );
  // Through the bin shim npm made, as a user would type it...
  const shim = spawnSync(join(app, 'node_modules/.bin/cloister'), ['--version'], {
    cwd: app,
    encoding: 'utf8',
    timeout: 30_000,
    env: { ...process.env, PATH: `${resolve(process.execPath, '..')}:/usr/bin:/bin` },
  });
  assert.equal(shim.status, 0, shim.stderr);
  assert.equal(shim.stdout, `cloister ${pkg.version}\n`);
  // ...and on the Node running this test (the shim's `env node` may be another one).
  const direct = spawnSync(process.execPath, [join(installed, 'bin/cloister.js'), '--version'], {
    cwd: app,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(direct.status, 0, direct.stderr);
  assert.equal(direct.stdout, `cloister ${pkg.version}\n`);
});

test('the installed package exports cloister/attested-tls: a Node client verifies an attested certificate with it', {
  timeout: 60_000,
}, async () => {
  const app = join(tmp, 'app');
  assert.ok(existsSync(join(app, 'node_modules', pkg.name)), 'installed by the test above');
  // A real attested certificate under a software NSM root, made with the repository's code...
  const { SoftwareNsm } = await import('../../src/nsm/software.ts');
  const { buildAttestedCertificate, generateAttestedKey } = await import(
    '../../src/attested-tls/certificate.ts'
  );
  const pcr0 = 'ef'.repeat(48);
  const sw = await SoftwareNsm.open({ stateDir: null, pcrs: { '0': pcr0 } });
  const key = await generateAttestedKey();
  const document = await sw.client().attestation({ public_key: key.spki });
  const der = await buildAttestedCertificate({
    key,
    document,
    commonName: 'pack',
    dnsNames: ['localhost'],
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 600_000),
  });
  writeFileSync(join(app, 'cert.der'), der);
  writeFileSync(join(app, 'root.pem'), sw.rootPem);
  // ...checked by the installed package, imported by its public name, as a client program would.
  const program = `
import { readFileSync } from 'node:fs';
import { verifyAttestedCertificate, AttestedAgent, AttestationError } from 'cloister/attested-tls';
const cert = readFileSync('cert.der');
const rootPem = readFileSync('root.pem', 'utf8');
const id = await verifyAttestedCertificate(cert, { rootPem, pcrs: { 0: '${pcr0}' } });
let check = null;
try { await verifyAttestedCertificate(cert, { rootPem, pcrs: { 0: '${'00'.repeat(48)}' } }); }
catch (e) { check = e instanceof AttestationError ? e.check : String(e); }
console.log(JSON.stringify({ pcr0: id.attestation.pcrs['0'], check, agent: typeof AttestedAgent }));
`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', program], {
    cwd: app,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { pcr0, check: 'pcr', agent: 'function' });
});
