// Security review of the C addon's argument checks. Each probe runs in a child process, so an addon that
// closes or opens the wrong file cannot disturb the test runner.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { test } from 'node:test';
import { nativeCandidates } from '../src/native.ts';

const addon = nativeCandidates().find((p) => existsSync(p));

/** Runs `body` in a child with `n` = the addon, `fs` = node:fs; prints what it returns as JSON. */
function probe(body: string): Record<string, unknown> {
  const code = `const n = require(${JSON.stringify(addon)}); const fs = require('node:fs');
    const attempt = (f) => {
      try {
        const v = f();
        if (v && typeof v.then === 'function') { v.catch(() => {}); return { ok: 'a promise' }; }
        return { ok: v };
      } catch (e) { return { name: e.name, code: e.code }; }
    };
    console.log(JSON.stringify((() => { ${body} })()));`;
  const r = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

test('fd, backlog, pid and timeout arguments must be int32 integers, never silently truncated', {
  skip: !addon && 'native addon not built',
}, () => {
  const r = probe(`
    const fd = fs.openSync('/dev/null', 'r');
    return {
      half: attempt(() => n.closeFd(fd + 0.5)),
      stillOpen: attempt(() => fs.fstatSync(fd).isCharacterDevice()),
      nan: attempt(() => n.closeFd(NaN)),
      stdinOpen: attempt(() => fs.fstatSync(0) !== undefined),
      wrapped: attempt(() => n.closeFd(2 ** 32 + fd)),
      stillOpen2: attempt(() => fs.fstatSync(fd).isCharacterDevice()),
      backlog: attempt(() => n.vsockListen(fd, 2 ** 40)),
      pid: attempt(() => n.reapZombie(2 ** 32 + 1)),
      timeout: attempt(() => n.vsockConnect(1, 1, 2 ** 31)),
      nsmFd: attempt(() => n.nsmRequest(Infinity, new Uint8Array(1))),
    };`);
  for (const k of ['half', 'nan', 'wrapped', 'backlog', 'pid', 'timeout', 'nsmFd']) {
    assert.deepEqual(r[k], { name: 'RangeError', code: 'ERR_OUT_OF_RANGE' }, `${k}: ${JSON.stringify(r[k])}`);
  }
  assert.deepEqual(r.stillOpen, { ok: true });
  assert.deepEqual(r.stillOpen2, { ok: true });
  assert.deepEqual(r.stdinOpen, { ok: true });
});

test('nsmOpen refuses a path with a NUL byte or one too long, instead of opening a shorter one', {
  skip: !addon && 'native addon not built',
}, () => {
  // Cut at 4095 bytes, the long path would read '/////.../dev/null' (it really names '/dev/null/../x').
  const long = `${'/'.repeat(4087)}dev/null/../x`;
  const r = probe(`
    return {
      nul: attempt(() => n.nsmOpen('/dev/null\\0/nsm')),
      long: attempt(() => n.nsmOpen(${JSON.stringify(long)})),
      number: attempt(() => n.nsmOpen(5)),
    };`);
  assert.notEqual(typeof (r.nul as { ok?: unknown }).ok, 'number', 'opened /dev/null');
  assert.equal((r.nul as { name: string }).name, 'TypeError');
  assert.deepEqual(r.long, { name: 'Error', code: 'ENAMETOOLONG' });
  assert.equal((r.number as { name: string }).name, 'TypeError');
});
