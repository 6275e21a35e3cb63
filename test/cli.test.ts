import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';

test('cloister --version prints the version', () => {
  const out = execFileSync(process.execPath, ['dist/cli.js', '--version'], { encoding: 'utf8' });
  assert.match(out, /^cloister \d+\.\d+\.\d+\n$/);
});

test('an unknown command exits 2 with usage', () => {
  const r = spawnSync(process.execPath, ['dist/cli.js', 'nope'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command 'nope'/);
});
