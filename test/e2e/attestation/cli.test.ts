// `cloister attest verify|describe|root` as a real process: JSON output, exit codes and the one-line
// failure messages.
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SoftwareNsm } from '../../../src/nsm/software.ts';
import { tempDir } from '../../helpers/fixtures/temp-dir.ts';

const VECTORS = new URL('../../vectors/', import.meta.url).pathname;
const BLOCKY = join(VECTORS, 'blocky_nitro_attestation.cbor');
const BLOCKY_AT = '2024-09-07T14:37:40Z';

function cli(args: string[], input?: string | Buffer) {
  const r = spawnSync(process.execPath, ['dist/cli.js', 'attest', ...args], {
    input,
    encoding: 'utf8',
    timeout: 30_000,
  });
  assert.equal(r.error, undefined);
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit 1 and exactly one stderr line naming the check. */
function assertFails(r: ReturnType<typeof cli>, check: string): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  const lines = r.stderr.split('\n').filter(Boolean);
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, new RegExp(`^cloister attest: ${check}: `));
}

test('verify prints the document as JSON and exits 0 inside the chain window', () => {
  const r = cli(['verify', '--at', BLOCKY_AT, '--reject-debug', BLOCKY]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.valid, true);
  assert.equal(j.module_id, 'i-0a22e5c5f24d22174-enc0191cceb4289903f');
  assert.equal(j.timestamp, '2024-09-07T14:37:39.545Z');
  assert.equal(j.digest, 'SHA384');
  assert.equal(j.debug, false);
  assert.equal(Object.keys(j.pcrs).length, 16);
  assert.match(j.pcrs['0'], /^[0-9a-f]{96}$/);
  assert.equal(j.nonce, '01'.repeat(1024));
  assert.equal(j.public_key, '01'.repeat(1024));
  assert.match(j.certificate.subject, /CN=i-0a22e5c5f24d22174-enc0191cceb4289903f\.us-east-1\.aws/);
  assert.equal(j.certificate.notAfter, '2024-09-07T17:37:39.000Z'); // the chain window's end (vectors/README.md)
  assert.equal(j.cabundle[0].subject, 'C=US, O=Amazon, OU=AWS, CN=aws.nitro-enclaves');
});

test('verify fails with one line naming the check: chain now, debug, pcr, nonce, age', () => {
  assertFails(cli(['verify', BLOCKY]), 'chain');
  assertFails(
    cli([
      'verify',
      '--at',
      'timestamp',
      '--reject-debug',
      join(VECTORS, 'blocky_nitro_attestation_debug.cbor'),
    ]),
    'debug',
  );
  assertFails(cli(['verify', '--at', BLOCKY_AT, '--pcr', `0=${'00'.repeat(48)}`, BLOCKY]), 'pcr');
  assertFails(cli(['verify', '--at', BLOCKY_AT, '--nonce', 'abcd', BLOCKY]), 'nonce');
  assertFails(cli(['verify', '--at', '2024-09-07T15:37:39Z', '--max-age', '10m', BLOCKY]), 'age');
  assert.equal(
    cli(['verify', '--at', BLOCKY_AT, '--max-age', '10m', '--nonce', '01'.repeat(1024), BLOCKY]).code,
    0,
  );
});

test('DOC may be base64 (file or stdin) and the indefinite-length document works', () => {
  const b64 = readFileSync(join(VECTORS, 'choracle_readme_attestation_2026-04-22.b64'));
  const r = cli(['verify', '--at', '2026-04-22T20:48:00Z', '-'], b64);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout).timestamp, '2026-04-22T20:47:56.189Z');
  assert.equal(cli(['verify', '--at', 'timestamp', join(VECTORS, 'blocky_nitro_attestation.b64')]).code, 0);
  assertFails(cli(['verify', '-'], 'this is not a document!'), 'decode');
  const flipped = readFileSync(BLOCKY);
  flipped[flipped.length - 10] = flipped[flipped.length - 10]! ^ 0xff;
  assertFails(cli(['verify', '--at', BLOCKY_AT, '-'], flipped), 'signature');
});

test('describe decodes without verifying; usage errors exit 2', () => {
  const r = cli(['describe', BLOCKY]);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout);
  assert.equal(j.valid, undefined);
  assert.equal(j.user_data, '01'.repeat(1024));
  assert.equal(cli(['verify']).code, 2);
  assert.equal(cli(['verify', '--pcr', 'zz', BLOCKY]).code, 2);
  assert.equal(cli(['verify', '--max-age', 'soon', BLOCKY]).code, 2);
  assert.equal(cli(['frobnicate']).code, 2);
  assert.equal(cli(['describe', '/nonexistent/doc']).code, 2);
  assertFails(cli(['describe', '-'], Buffer.from([0x84, 0x01])), 'decode');
});

test('software NSM documents verify with the root from `attest root`, not with AWS', async (t) => {
  const dir = tempDir(t, 'cloister-attest-cli-');
  const state = join(dir, 'state');
  const root = cli(['root', '--state-dir', state]);
  assert.equal(root.code, 0, root.stderr);
  assert.match(root.stdout, /^-----BEGIN CERTIFICATE-----\n[\s\S]+-----END CERTIFICATE-----\n$/);
  assert.equal(cli(['root', '--state-dir', state]).stdout, root.stdout, 'same root every time');

  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const sw = await SoftwareNsm.open({ stateDir: state, pcrs: { '0': 'cd'.repeat(48) } });
  assert.equal(sw.rootPem, root.stdout);
  const doc = await sw.client().attestation({ public_key: spki, nonce: Buffer.from('beef', 'hex') });
  const docPath = join(dir, 'doc.cbor');
  writeFileSync(docPath, doc);
  const rootPath = join(dir, 'root.pem');
  writeFileSync(rootPath, root.stdout);
  const keyPath = join(dir, 'key.pem');
  writeFileSync(keyPath, publicKey.export({ type: 'spki', format: 'pem' }));

  const ok = cli([
    'verify',
    '--root',
    rootPath,
    '--public-key',
    keyPath,
    '--nonce',
    'beef',
    '--pcr',
    `0=${'cd'.repeat(48)}`,
    '--max-age',
    '5m',
    '--reject-debug',
    docPath,
  ]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(JSON.parse(ok.stdout).public_key, spki.toString('hex'));
  assertFails(cli(['verify', docPath]), 'chain');
  const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey;
  writeFileSync(keyPath, other.export({ type: 'spki', format: 'pem' }));
  assertFails(cli(['verify', '--root', rootPath, '--public-key', keyPath, docPath]), 'public_key');
});

test('processes racing to create the software root agree on one', async (t) => {
  const state = join(tempDir(t, 'cloister-attest-cli-'), 'fresh');
  const outputs = await Promise.all(
    Array.from(
      { length: 3 },
      () =>
        new Promise<string>((resolve, reject) => {
          execFile(
            process.execPath,
            ['dist/cli.js', 'attest', 'root', '--state-dir', state],
            { timeout: 30_000 },
            (err, stdout) => (err ? reject(err) : resolve(stdout)),
          );
        }),
    ),
  );
  assert.match(outputs[0]!, /^-----BEGIN CERTIFICATE-----/);
  assert.equal(outputs[1], outputs[0]);
  assert.equal(outputs[2], outputs[0]);
  assert.equal(readFileSync(join(state, 'root.pem'), 'utf8'), outputs[0]);
});
