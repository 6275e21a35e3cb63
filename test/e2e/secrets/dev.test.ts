// Boot-time secrets in `cloister dev` for a manifest without kms_proxy: `cloister secrets encrypt --dev`
// binds the key to the run's dev PCR0, and dev runs its KMS emulator for the secrets alone (cloister.yaml
// kms.endpoints in the derived config). Everything runs in its own network namespace (`unshare -n`, lo
// up), as the demo test does: the relay can reach nothing but this namespace's loopback.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

const dir = mkdtempSync(join(tmpdir(), 'cloister-secrets-dev-'));
after(() => rmSync(dir, { recursive: true, force: true }));

/** `sh -c SCRIPT` in a fresh network namespace with lo up; its exit code and output. */
function inNetns(script: string, env: NodeJS.ProcessEnv): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve) => {
    const child = spawn('unshare', ['-n', 'sh', '-c', `ip link set lo up && ${script}`], {
      env: { ...process.env, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      out += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

test('cloister dev decrypts a boot-time secret bound to its PCR0 without a KMS proxy in the manifest', async () => {
  const manifest = join(dir, 'enclaver.yaml');
  writeFileSync(
    manifest,
    'version: v1\nname: secrets-dev\ntarget: t:latest\nsources:\n  app: a:latest\negress:\n  allow: ["127.0.0.1"]\n',
  );
  // The app checks the value and says only whether it matched.
  const app = 'sh -c \'test "$PW" = "s3cret value" && echo SECRET-MATCHES || echo SECRET-DIFFERS\'';
  const r = await inNetns(
    [
      `printf 's3cret value' | "$NODE" dist/cli.js secrets encrypt --dev --state-dir "$STATE" -f "$MANIFEST"`,
      `--name pw --env PW -- ${app} > "$SETTINGS"`,
      `&& "$NODE" dist/cli.js dev -f "$MANIFEST" --state-dir "$STATE" -- ${app}`,
    ].join(' '),
    {
      NODE: process.execPath,
      STATE: join(dir, 'state'),
      MANIFEST: manifest,
      SETTINGS: join(dir, 'cloister.yaml'),
    },
  );
  assert.equal(r.code, 0, r.out);
  assert.match(r.out, /SECRET-MATCHES/, r.out);
  assert.ok(!r.out.includes('s3cret value'), 'the plaintext appears in no output');
});
