// The RAM directory (src/system/ram-dir.ts) as dev mode and unprivileged runs use it: no mount, a
// private directory on /dev/shm. (The tmpfs mount itself, as root in a mount namespace, is
// test/e2e/system/ram-dir.test.ts.)
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { statfs } from 'node:fs/promises';
import { dirname } from 'node:path';
import { test } from 'node:test';
import { LazyRamDir, RamDir, RamDirError, ramFsOf } from '../../../src/system/ram-dir.ts';

// NUL, bytes that are not UTF-8, a newline: files are written byte for byte.
const BYTES = Buffer.from([0x00, 0xff, 0xfe, 0x0a, 0x80, 0x41, 0x00, 0xc3, 0x28]);

test('path null: a private 0711 directory on a RAM file system, files written exactly, 0400, removed at close', async () => {
  const dir = await RamDir.open({ path: null, mount: 'never' });
  assert.equal(dir.mounted, false);
  assert.ok(dir.fs === 'tmpfs' || dir.fs === 'ramfs', dir.fs);
  assert.equal(await ramFsOf(dir.path), dir.fs);
  assert.equal(statSync(dir.path).mode & 0o777, 0o711);
  const file = await dir.writeFile('tls/key.pem', BYTES);
  assert.equal(dirname(file), `${dir.path}/tls`);
  assert.deepEqual(readFileSync(file), BYTES);
  assert.equal(statSync(file).mode & 0o777, 0o400);
  assert.equal(statSync(`${dir.path}/tls`).mode & 0o777, 0o711);
  // A second write replaces the file (renamed into place: no temporary file is left behind).
  await dir.writeFile('tls/key.pem', Buffer.from('second'), { mode: 0o440 });
  assert.equal(readFileSync(file, 'utf8'), 'second');
  assert.equal(statSync(file).mode & 0o777, 0o440);
  assert.deepEqual(readdirSync(`${dir.path}/tls`), ['key.pem']);
  await dir.close();
  assert.equal(existsSync(dir.path), false);
  await assert.rejects(dir.writeFile('x', BYTES), /closed/);
});

test('names outside the directory are refused', async () => {
  const dir = await RamDir.open({ path: null, mount: 'never' });
  try {
    for (const bad of ['', '/etc/passwd', '..', '../x', 'a/../../x', '.', 'a\0b']) {
      await assert.rejects(dir.writeFile(bad, BYTES), RamDirError, JSON.stringify(bad));
    }
    // Inside after normalisation is fine.
    assert.equal(await dir.writeFile('a/../b', BYTES), `${dir.path}/b`);
  } finally {
    await dir.close();
  }
});

test('a directory that is not on tmpfs or ramfs is refused by name, never written to', async () => {
  // /proc exists everywhere and is procfs: not a RAM file system cloister may write secrets to.
  assert.notEqual(Number((await statfs('/proc')).type), 0x01021994);
  await assert.rejects(RamDir.open({ path: '/proc', mount: 'never' }), {
    name: 'RamDirError',
    message: '/proc is not on a RAM file system (tmpfs or ramfs): refusing to write secrets there',
  });
  await assert.rejects(RamDir.open({ path: 'relative/dir', mount: 'never' }), /must be an absolute path/);
});

test('LazyRamDir creates nothing until the first use, and closes what it opened', async () => {
  const lazy = new LazyRamDir({ path: null, mount: 'never' });
  assert.equal(lazy.opened, false);
  await lazy.close(); // nothing to do
  const dir = await lazy.get();
  assert.equal(await lazy.get(), dir);
  await dir.writeFile('f', BYTES);
  await lazy.close();
  assert.equal(existsSync(dir.path), false);
});
