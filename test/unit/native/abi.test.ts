// loadNative (src/native.ts) checks the addon's ABI version once, at load: an addon built from other
// sources (a stale native/build, an old $CLOISTER_NATIVE) is refused with one message naming both
// versions, instead of failing later wherever a function is missing or changed.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { NATIVE_ABI_VERSION } from '../../../src/native.ts';

let dir: string;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cloister-abi-'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

/** loadNative() in a fresh process with $CLOISTER_NATIVE at a stand-in module exporting `exports`. */
function load(exportsSource: string) {
  const addon = join(dir, `addon-${Math.random().toString(36).slice(2)}.cjs`);
  writeFileSync(addon, `module.exports = ${exportsSource};`);
  const script = `import { loadNative } from './src/native.ts';
try { loadNative(); console.log('loaded'); } catch (e) { console.log(e.message); }`;
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
    encoding: 'utf8',
    env: { ...process.env, CLOISTER_NATIVE: addon },
  });
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.trim();
}

test('an addon of another ABI version is refused at load, naming both versions', () => {
  const out = load(`{ abiVersion: ${NATIVE_ABI_VERSION + 1} }`);
  assert.match(
    out,
    new RegExp(
      `has ABI version ${NATIVE_ABI_VERSION + 1}, this cloister needs ${NATIVE_ABI_VERSION}: rebuild`,
    ),
  );
});

test('an addon from before ABI versions is refused at load', () => {
  assert.match(load('{ vsockSocket() {} }'), /has ABI version none \(a build older than version 2\)/);
});

test('an addon of the expected ABI version loads', () => {
  assert.equal(load(`{ abiVersion: ${NATIVE_ABI_VERSION} }`), 'loaded');
});
