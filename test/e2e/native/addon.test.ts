// The native addon and what is built on it: AF_VSOCK create/bind/listen (this machine has /dev/vsock but
// no vsock loopback, so no data crosses a real vsock here), the connect error path to CID 1 only
// (VMADDR_CID_LOCAL never leaves the machine), fd adoption into net.Server/net.Socket (exercised with
// Unix-socket fds, same code path), loopback up under `unshare -n`, entropy, subreaper reaping.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import type { Server } from 'node:net';
import { test } from 'node:test';
import { loadNative, NATIVE_ABI_VERSION, nativeCandidates } from '../../../src/native.ts';
import { CID_ANY } from '../../../src/transport/types.ts';
import {
  serverFromListeningFd,
  socketFromConnectedFd,
  VSOCK_PORT_ANY,
  VsockTransport,
  vsockLocalAddress,
} from '../../../src/transport/vsock.ts';

const native = loadNative();
const hasVsock = existsSync('/dev/vsock');
const VMADDR_CID_LOCAL = 1;

function runChild(args: string[], opts: { prefix?: string[] } = {}) {
  const argv = [...(opts.prefix ?? []), process.execPath, '--import', 'tsx', ...args];
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', timeout: 30_000 });
  assert.equal(r.status, 0, `child failed: ${r.stderr}`);
  return r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
}

/** A vsock port that is free right now (bind to VMADDR_PORT_ANY, read it back, release it). */
function freeVsockPort(): number {
  const fd = native.vsockSocket();
  try {
    native.vsockBind(fd, CID_ANY, VSOCK_PORT_ANY);
    return native.vsockLocalAddress(fd).port;
  } finally {
    native.closeFd(fd);
  }
}

function closeServer(s: Server): Promise<void> {
  return new Promise((resolve) => s.close(() => resolve()));
}

test('the addon has the ABI version this code expects and exports every function', () => {
  assert.equal(native.abiVersion, NATIVE_ABI_VERSION);
  for (const fn of [
    'vsockSocket',
    'vsockBind',
    'vsockListen',
    'vsockConnect',
    'vsockLocalAddress',
    'vsockRemoteAddress',
    'closeFd',
    'nsmOpen',
    'nsmRequest',
    'bringUpLoopback',
    'seedEntropy',
    'setChildSubreaper',
    'reapZombie',
    'mountTmpfs',
    'unmount',
    'makePipe',
    'spliceJoin',
    'spliceCancel',
    'spliceIdlePipes',
    'originalDestination',
    'iptablesGet',
    'iptablesReplace',
    'rtnetlinkRequest',
    'bindMount',
  ]) {
    assert.equal(typeof (native as unknown as Record<string, unknown>)[fn], 'function', fn);
  }
});

test('arguments are validated before any syscall', () => {
  assert.throws(() => native.vsockBind(0, -1, 0), { name: 'RangeError' });
  assert.throws(() => native.vsockBind(0, 1.5, 0), { name: 'RangeError' });
  assert.throws(() => native.vsockBind(0, 1, 2 ** 32), { name: 'RangeError' });
  assert.throws(() => (native.vsockBind as (...a: unknown[]) => void)(0, '3', 0), { name: 'TypeError' });
  assert.throws(() => (native.seedEntropy as (a: unknown) => void)('abc'), { name: 'TypeError' });
  assert.throws(() => native.closeFd(-1), { code: 'EBADF', syscall: 'close' });
  // The 4096-byte NSM limit holds in the addon too, before any ioctl (fd 0 is never touched).
  assert.throws(() => native.nsmRequest(0, new Uint8Array(4097)), { code: 'EMSGSIZE' });
  assert.throws(() => native.nsmRequest(0, new Uint16Array(4) as unknown as Uint8Array), {
    name: 'TypeError',
  });
});

test('AF_VSOCK socket, bind and listen', { skip: !hasVsock && 'no /dev/vsock' }, () => {
  const fd = native.vsockSocket();
  const fd2 = native.vsockSocket();
  try {
    assert.ok(fd > 2);
    native.vsockBind(fd, CID_ANY, VSOCK_PORT_ANY);
    const addr = native.vsockLocalAddress(fd);
    assert.equal(addr.cid, CID_ANY);
    assert.notEqual(addr.port, VSOCK_PORT_ANY, 'the kernel assigned a port');
    native.vsockListen(fd, 16);
    // A second socket on the same port is refused with the errno name.
    assert.throws(() => native.vsockBind(fd2, CID_ANY, addr.port), { code: 'EADDRINUSE', syscall: 'bind' });
    // A listening socket has no peer.
    assert.throws(() => native.vsockRemoteAddress(fd), { code: 'ENOTCONN' });
  } finally {
    native.closeFd(fd);
    native.closeFd(fd2);
  }
});

test('VsockTransport.listen gives a listening net.Server that owns the fd', {
  skip: !hasVsock && 'no /dev/vsock',
}, async () => {
  const transport = new VsockTransport();
  const port = freeVsockPort();
  const server = await transport.listen(port);
  try {
    assert.equal(server.listening, true);
    assert.deepEqual(vsockLocalAddress(server), { cid: CID_ANY, port });
    await assert.rejects(transport.listen(port), (e: Error & { code?: string }) => {
      assert.equal(e.code, 'EADDRINUSE');
      assert.match(e.message, new RegExp(`vsock listen on ${CID_ANY}:${port}`));
      return true;
    });
  } finally {
    await closeServer(server);
  }
  // Closing the server released the port.
  const again = await transport.listen(port);
  await closeServer(again);
});

test('vsock connect to CID 1 fails with an errno code instead of hanging', {
  skip: !hasVsock && 'no /dev/vsock',
}, async () => {
  // VMADDR_CID_LOCAL only: every other CID leads off this machine.
  const transport = new VsockTransport({ connectTimeoutMs: 300 });
  await assert.rejects(
    transport.connect(VMADDR_CID_LOCAL, freeVsockPort()),
    (e: Error & { code?: string }) => {
      assert.match(e.code ?? '', /^E[A-Z]+$/);
      assert.match(e.message, /vsock connect to 1:\d+: connect: /);
      return true;
    },
  );
});

for (const mode of ['server', 'client'] as const) {
  test(`an adopted ${mode === 'server' ? 'listening' : 'connected'} fd is a half-open net.${mode === 'server' ? 'Server' : 'Socket'}`, () => {
    const r = spawnSync(
      'python3',
      ['test/helpers/native/adopt.py', mode, process.execPath, 'test/helpers/native/adopt-child.ts'],
      {
        encoding: 'utf8',
        timeout: 30_000,
      },
    );
    assert.equal(r.status, 0, r.stderr);
    const events = r.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l));
    const byEvent = Object.fromEntries(events.map((e) => [e.event, e]));
    if (mode === 'server') assert.equal(byEvent.listening.listening, true);
    // The peer half-closed; the socket still wrote its answer afterwards (allowHalfOpen).
    assert.deepEqual(byEvent.end, { event: 'end', got: 'ping', isSocket: 'Socket', allowHalfOpen: true });
    assert.equal(byEvent.peer.reply, 'echo:ping');
    assert.ok(byEvent.closed);
  });
}

test('an fd that cannot be adopted is refused synchronously', () => {
  // An fd number far above any open file: never someone else's descriptor.
  const bad = 1 << 29;
  assert.throws(() => serverFromListeningFd(bad), { code: 'EBADF' });
  assert.throws(() => socketFromConnectedFd(bad), { code: 'EBADF' });
});

test('bringUpLoopback brings lo (and 127.0.0.1) up in a fresh network namespace', () => {
  const [r] = runChild(['test/helpers/native/system-child.ts', 'loopback'], { prefix: ['unshare', '-n'] });
  assert.match(r.before.link, /^1: lo: <LOOPBACK>.* state DOWN/);
  // ENETUNREACH here (or EADDRNOTAVAIL on kernels that refuse the bind): no loopback while lo is down.
  assert.match(r.before.tcp, /^(ENETUNREACH|EADDRNOTAVAIL)$/);
  assert.match(r.after.link, /^1: lo: <LOOPBACK,UP,LOWER_UP>/);
  assert.equal(r.after.tcp, 'ok', 'the kernel assigned 127.0.0.1 and TCP works over it');
});

test('seedEntropy credits with CAP_SYS_ADMIN and falls back to an uncredited write without it', () => {
  const capEff = BigInt(`0x${/CapEff:\s*([0-9a-f]+)/.exec(readFileSync('/proc/self/status', 'utf8'))![1]}`);
  const CAP_SYS_ADMIN = 21n;
  const [withCaps] = runChild(['test/helpers/native/system-child.ts', 'entropy']);
  assert.deepEqual(withCaps, { credited: ((capEff >> CAP_SYS_ADMIN) & 1n) === 1n });
  const [withoutCap] = runChild(['test/helpers/native/system-child.ts', 'entropy'], {
    prefix: ['setpriv', '--inh-caps=-sys_admin', '--bounding-set=-sys_admin', '--'],
  });
  assert.deepEqual(withoutCap, { credited: false });
});

test('a child subreaper adopts orphans and reapZombie collects their exact status', () => {
  const [r] = runChild(['test/helpers/native/system-child.ts', 'reaper']);
  assert.deepEqual(r.withoutSubreaper, { ppidIsUs: false, reap: 'ECHILD' });
  assert.equal(r.ppidIsUs, true);
  assert.equal(r.status, 7 << 8, 'raw wait status of exit(7)');
  assert.equal(r.afterReap, 'ECHILD', 'reaped once');
  assert.equal(r.zero, 'ERR_OUT_OF_RANGE', 'never waitpid(0/-1)');
});

// The addon's argument checks, probed in a child process each, so an addon that closes or opens the wrong
// file cannot disturb the test runner.
const addon = nativeCandidates().find((p) => existsSync(p));

/** Runs `body` in a child with `n` = the addon, `fs` = node:fs; prints what it returns as JSON. */
function probe(body: string): Record<string, unknown> {
  assert.ok(addon, `no native addon at ${nativeCandidates().join(' or ')} (npm ci builds it)`);
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

test('fd, backlog, pid and timeout arguments must be int32 integers, never silently truncated', {}, () => {
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

test('nsmOpen refuses a path with a NUL byte or one too long, instead of opening a shorter one', {}, () => {
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
