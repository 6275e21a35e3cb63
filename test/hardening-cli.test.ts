// Security review of command-line lookups: a subcommand named like an Object member is unknown.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';

const CLI = join(import.meta.dirname, '../dist/cli.js');

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
