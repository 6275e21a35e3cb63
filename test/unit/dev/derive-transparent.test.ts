// `cloister dev` (src/dev/derive.ts) never hands transparent egress to its enclave side: there the
// route and nat rules would land in the developer's own network namespace and capture its traffic.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parse } from 'yaml';
import { DEFAULT_SETTINGS } from '../../../src/config/types.ts';
import { deriveEnclaveConfig } from '../../../src/dev/derive.ts';
import { tempDir } from '../../helpers/egress-fixture.ts';

test('dev mode turns transparent egress off and says so', (t) => {
  const dir = tempDir(t, 'cloister-derive-');
  const settings = structuredClone(DEFAULT_SETTINGS);
  settings.transparent.enabled = true;
  const derived = deriveEnclaveConfig({
    config: {
      manifestPath: join(dir, 'enclaver.yaml'),
      configDir: dir,
      manifest: {
        version: 'v1',
        name: 'x',
        target: 't',
        sources: { app: 'a' },
        egress: { allow: ['a.example'] },
      },
      settings,
    },
    dir: join(dir, 'derived'),
    vsockDir: join(dir, 'vsock'),
    enclaveCid: 16,
    nsmState: join(dir, 'nsm'),
    pcrs: {},
    kms: null,
    logLevel: 'info',
  });
  const written = parse(readFileSync(join(derived.configDir, 'cloister.yaml'), 'utf8'));
  assert.equal(written.transparent.enabled, false);
  assert.ok(
    derived.notes.some((n) => /transparent egress is off in dev mode/.test(n)),
    derived.notes.join('\n'),
  );
});
