import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { test } from 'node:test';

const CLI = 'dist/cli.js';

test('cloister --version prints the version', () => {
  const out = execFileSync(process.execPath, ['dist/cli.js', '--version'], { encoding: 'utf8' });
  assert.match(out, /^cloister \d+\.\d+\.\d+\n$/);
});

test('an unknown command exits 2 with usage', () => {
  const r = spawnSync(process.execPath, ['dist/cli.js', 'nope'], { encoding: 'utf8' });
  assert.equal(r.status, 2);
  assert.match(r.stderr, /unknown command 'nope'/);
});

// Lookups by name: a (sub)command named like an Object member is unknown, not Object's own property.
test("`cloister attest constructor` is an unknown subcommand (exit 2), not Object's constructor", () => {
  for (const sub of ['constructor', 'toString', '__proto__']) {
    const r = spawnSync(process.execPath, [CLI, 'attest', sub], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.status, 2, `${sub}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`unknown subcommand '${sub}'`));
  }
});

test('`cloister constructor` is an unknown command (exit 2)', () => {
  const r = spawnSync(process.execPath, [CLI, 'constructor'], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 2, r.stderr);
  assert.match(r.stderr, /unknown command 'constructor'/);
});
