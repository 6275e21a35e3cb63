// The RAM directory as the enclave has it (src/system/ram-dir.ts): cloister runs as root, so a tmpfs of
// its own is mounted (here inside `unshare -m`, so this machine's mounts are untouched), files land
// there with the app's uid and mode 0400, and closing unmounts it.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';

const CHILD = new URL('../../helpers/fixtures/ram-dir-child.ts', import.meta.url).pathname;
const APP_UID = 4242;
const BYTES = Buffer.from([0x00, 0xff, 0xfe, 0x0a, 0x80, 0x41, 0x00, 0xc3, 0x28]);

const base = mkdtempSync(join(tmpdir(), 'cloister-ramdir-'));
chmodSync(base, 0o755); // as /run is: the app's uid must be able to get to the mount point
after(() => rmSync(base, { recursive: true, force: true }));

test('as root: a tmpfs is mounted (nosuid,nodev,noexec), the file is 0400 and the app uid’s alone, unmounted at close', () => {
  const path = join(base, 'ram');
  const r = spawnSync(
    'unshare',
    ['-m', '--propagation', 'private', process.execPath, '--import', 'tsx', CHILD, path, String(APP_UID)],
    { encoding: 'utf8', timeout: 30_000, env: { ...process.env, RAM_DIR_BYTES_HEX: BYTES.toString('hex') } },
  );
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  const [opened, closed] = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  assert.equal(opened.mounted, true);
  assert.equal(opened.fs, 'tmpfs');
  assert.ok(opened.mount, 'the mount is in /proc/self/mountinfo');
  // mountinfo: "... <mount point> <per-mount options> ... - tmpfs tmpfs <super options>"
  const [perMount, superOpts] = [opened.mount.split(' ')[5], opened.mount.split(' - ')[1]];
  for (const o of ['nosuid', 'nodev', 'noexec'])
    assert.ok(perMount.split(',').includes(o), `${o} in ${perMount}`);
  assert.match(superOpts, /^tmpfs tmpfs .*\bsize=1024k\b/);
  assert.match(superOpts, /\bmode=711\b/);
  assert.equal(opened.uid, APP_UID);
  assert.equal(opened.gid, APP_UID);
  assert.equal(opened.mode, 0o400);
  assert.equal(opened.dirMode, 0o711);
  assert.equal(opened.readByApp, BYTES.toString('hex'));
  assert.equal(opened.readByOther, 'EACCES');
  assert.equal(closed.afterClose, null);
  assert.equal(closed.fileLeft, false);
  // Outside the namespace the mount point is an empty directory: nothing was written to the disk.
  assert.ok(existsSync(path));
  assert.deepEqual(readdirSync(path), []);
  assert.ok(!readFileSync('/proc/self/mountinfo', 'utf8').includes(` ${path} `));
});
