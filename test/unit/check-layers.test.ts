// scripts/check-layers.mjs (run by `npm run lint`): src/ has no import cycle between folders, and the
// checker does see one when there is.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

const SCRIPT = new URL('../../scripts/check-layers.mjs', import.meta.url).pathname;
const SRC = new URL('../../src', import.meta.url).pathname;

function check(dir: string) {
  return spawnSync(process.execPath, [SCRIPT, dir], { encoding: 'utf8' });
}

test('src/ has no import cycle between its folders', () => {
  const r = check(SRC);
  assert.equal(r.status, 0, r.stderr);
});

test('a cycle through a type-only import and a top-level file is found and named', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-layers-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  mkdirSync(join(dir, 'a'));
  mkdirSync(join(dir, 'b'));
  writeFileSync(join(dir, 'a', 'x.ts'), "import { y } from '../b/y.ts';\nexport const x = y;\n");
  writeFileSync(join(dir, 'b', 'y.ts'), "import type { T } from '../top.ts';\nexport const y: T = 1;\n");
  writeFileSync(join(dir, 'top.ts'), "export type T = number;\nexport const z = import('./a/x.ts');\n");
  const r = check(dir);
  assert.equal(r.status, 1, r.stdout);
  assert.match(r.stderr, /a\/ -> b\/: a\/x\.ts imports \.\.\/b\/y\.ts/);
  assert.match(r.stderr, /b\/ -> top\.ts/);
  assert.match(r.stderr, /top\.ts -> a\//);
  // Without the dynamic import the same tree is a clean stack of layers.
  writeFileSync(join(dir, 'top.ts'), 'export type T = number;\n');
  assert.equal(check(dir).status, 0);
});
