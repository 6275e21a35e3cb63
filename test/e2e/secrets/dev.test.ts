// Boot-time secrets in `cloister dev` for a manifest without kms_proxy: `cloister secrets encrypt --dev`
// binds the key to the run's dev PCR0, and dev runs its KMS emulator for the secrets alone (cloister.yaml
// kms.endpoints in the derived config). Everything runs in its own network namespace (`unshare -n`, lo
// up), as the demo test does: the relay can reach nothing but this namespace's loopback.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { exitWithin, spawnCaptured } from '../../helpers/fixtures/child.ts';

const dir = mkdtempSync(join(tmpdir(), 'cloister-secrets-dev-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('cloister dev decrypts a boot-time secret bound to its PCR0 without a KMS proxy in the manifest', async (t) => {
  const manifest = join(dir, 'enclaver.yaml');
  writeFileSync(
    manifest,
    'version: v1\nname: secrets-dev\ntarget: t:latest\nsources:\n  app: a:latest\negress:\n  allow: ["127.0.0.1"]\n',
  );
  // The app compares the value's digest with the one it is given, and says only whether it matched.
  const app = 'sh -c \'test "$(printf %s "$PW" | sha256sum)" = "$PW_SHA256  -" && echo SECRET-MATCHES\'';
  const script = [
    `printf 's3cret value' | "$NODE" dist/cli.js secrets encrypt --dev --state-dir "$STATE" -f "$MANIFEST"`,
    `--name pw --env PW -- ${app} > "$SETTINGS"`,
    `&& "$NODE" dist/cli.js dev -f "$MANIFEST" --state-dir "$STATE" -- ${app}`,
  ].join(' ');
  const run = spawnCaptured(t, 'unshare', ['-n', 'sh', '-c', `ip link set lo up && ${script}`], {
    env: {
      ...process.env,
      NODE: process.execPath,
      STATE: join(dir, 'state'),
      MANIFEST: manifest,
      SETTINGS: join(dir, 'cloister.yaml'),
      PW_SHA256: createHash('sha256').update('s3cret value').digest('hex'),
    },
  });
  const code = await exitWithin(run, 60_000);
  const out = run.out() + run.err();
  assert.equal(code, 0, out);
  assert.match(out, /SECRET-MATCHES/, out);
  assert.ok(!out.includes('s3cret value'), 'the plaintext appears in no output');
});
