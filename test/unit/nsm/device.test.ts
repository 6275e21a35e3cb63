// The /dev/nsm ioctl path without a device: a test-only LD_PRELOAD shim (test/native/nsm_shim.c,
// compiled here) answers NSM_IOCTL_RAW like the Linux driver and records what it was sent.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { constants, tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { decode } from 'cbor-x';
import { openNsmDevice } from '../../../src/nsm/device.ts';
import { NsmError } from '../../../src/nsm/types.ts';
import { buildShims } from '../../helpers/native/shims.ts';

const GET_RANDOM = '6947657452616e646f6d';
const DESCRIBE_PCR0 = 'a16b4465736372696265504352a165696e64657800';
const ERROR_INVALID_ARGUMENT = 'a1654572726f726f496e76616c6964417267756d656e74';

let dir: string;
let shim: string;
let n = 0;

before(() => {
  dir = mkdtempSync(join(tmpdir(), 'cloister-nsm-'));
  shim = buildShims(dir, ['nsm_shim']);
});
after(() => rmSync(dir, { recursive: true, force: true }));

interface Result {
  ok: boolean;
  length?: number;
  hex?: string;
  name?: string;
  code?: string;
  errno?: string;
  message?: string;
}

/** Runs test/native/nsm-child.ts under the shim; returns its results and the shim's record. */
function run(requests: string[], env: Record<string, string> = {}) {
  const record = join(dir, `record-${n++}.txt`);
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', 'test/helpers/native/nsm-child.ts', ...requests],
    {
      encoding: 'utf8',
      timeout: 30_000,
      env: { ...process.env, LD_PRELOAD: shim, NSM_SHIM_RECORD: record, ...env },
    },
  );
  assert.equal(r.status, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  const last = lines.pop() as { afterClose: string };
  const recorded = existsSync(record)
    ? readFileSync(record, 'utf8')
        .trim()
        .split('\n')
        .map((l) => {
          const m = /^req=([0-9a-f]*) cap=(\d+) busy=(\d+)$/.exec(l);
          assert.ok(m, `record line: ${l}`);
          return { req: m[1]!, cap: Number(m[2]), busy: Number(m[3]) };
        })
    : [];
  return { results: lines as Result[], recorded, afterClose: last.afterClose };
}

test('GetRandom: request bytes reach the ioctl, the reply comes back whole', () => {
  const { results, recorded, afterClose } = run([GET_RANDOM]);
  assert.deepEqual(
    recorded,
    [{ req: GET_RANDOM, cap: 12288, busy: 1 }],
    'one ioctl, full 12288-byte response buffer',
  );
  const [r] = results;
  assert.equal(r!.ok, true);
  const reply = decode(Buffer.from(r!.hex!, 'hex')) as { GetRandom: { random: Uint8Array } };
  assert.deepEqual(
    Buffer.from(reply.GetRandom.random),
    Buffer.from(Array.from({ length: 256 }, (_, i) => i)),
  );
  assert.equal(r!.length, 22 + 256);
  assert.equal(afterClose, 'DeviceError', 'raw() after close() is refused');
});

test('NSM protocol errors are not errno: the {"Error": ...} reply is passed up as bytes', () => {
  const { results } = run([DESCRIBE_PCR0], { NSM_SHIM_REPLY: ERROR_INVALID_ARGUMENT });
  assert.deepEqual(results, [{ ok: true, length: 23, hex: ERROR_INVALID_ARGUMENT }]);
});

test('concurrent requests each get their reply, one ioctl at a time, in order', () => {
  const reqs = [GET_RANDOM, DESCRIBE_PCR0, GET_RANDOM, DESCRIBE_PCR0];
  // Each ioctl is held 30 ms: overlapping calls (each pinning a thread-pool thread) would show busy > 1.
  const { results, recorded } = run(reqs, { NSM_SHIM_DELAY_MS: '30' });
  assert.equal(results.length, 4);
  assert.ok(results.every((r) => r.ok && r.length === 278));
  assert.deepEqual(
    recorded.map((r) => [r.req, r.busy]),
    reqs.map((req) => [req, 1]),
  );
});

test('a reply longer than the buffer is truncated to 12288 bytes, as the driver does', () => {
  const { results } = run([GET_RANDOM], { NSM_SHIM_MODE: 'big' });
  const expected = Buffer.from(Array.from({ length: 12288 }, (_, i) => (i * 7 + 1) & 0xff));
  assert.equal(results[0]!.length, 12288);
  assert.equal(results[0]!.hex, expected.toString('hex'));
});

test('a driver claiming more bytes than the buffer holds is a DeviceError, not an over-read', () => {
  const { results } = run([GET_RANDOM], { NSM_SHIM_MODE: 'overlong' });
  assert.equal(results[0]!.ok, false);
  assert.equal(results[0]!.code, 'DeviceError');
  assert.equal(results[0]!.errno, 'EOVERFLOW');
});

for (const [errno, code] of [
  ['EMSGSIZE', 'InputTooLarge'],
  ['EIO', 'DeviceError'],
  ['ETIMEDOUT', 'DeviceError'],
] as const) {
  test(`ioctl errno ${errno} becomes NsmError ${code}`, () => {
    const num = constants.errno[errno];
    const { results, recorded } = run([GET_RANDOM], { NSM_SHIM_MODE: `errno:${num}` });
    assert.equal(recorded.length, 1, 'the ioctl was made');
    const [r] = results;
    assert.equal(r!.ok, false);
    assert.equal(r!.name, 'NsmError');
    assert.equal(r!.code, code);
    assert.equal(r!.errno, errno);
    assert.match(r!.message!, new RegExp(`\\(${errno}\\)`));
  });
}

test('4096 bytes go to the device; 4097 are refused before the ioctl', () => {
  const max = 'ab'.repeat(4096);
  const over = 'ab'.repeat(4097);
  const { results, recorded } = run([max, over]);
  assert.equal(results[0]!.ok, true);
  assert.equal(results[1]!.ok, false);
  assert.equal(results[1]!.code, 'InputTooLarge');
  assert.deepEqual(
    recorded.map((r) => r.req.length / 2),
    [4096],
    'only the 4096-byte request reached the ioctl',
  );
});

test('opening a missing device is a DeviceError naming the errno', async () => {
  const missing = join(dir, 'no-such-nsm');
  await assert.rejects(openNsmDevice(missing), (e: unknown) => {
    assert.ok(e instanceof NsmError);
    assert.equal(e.code, 'DeviceError');
    assert.match(e.message, /ENOENT/);
    return true;
  });
});

test('openNsm({kind: device}) speaks CBOR through this ioctl path', () => {
  const record = join(dir, `record-${n++}.txt`);
  const child = (args: string[], env: Record<string, string> = {}) => {
    const r = spawnSync(
      process.execPath,
      ['--import', 'tsx', 'test/helpers/native/nsm-client-child.ts', ...args],
      {
        encoding: 'utf8',
        timeout: 30_000,
        env: { ...process.env, LD_PRELOAD: shim, NSM_SHIM_RECORD: record, ...env },
      },
    );
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout) as { ok: boolean; hex?: string; name?: string; code?: string };
  };
  const random = child(['getRandom']);
  assert.deepEqual(random, {
    ok: true,
    hex: Buffer.from(Array.from({ length: 256 }, (_, i) => i)).toString('hex'),
  });
  // The NSM's {"Error": "InvalidArgument"} is a successful ioctl that the client turns into NsmError.
  const refused = child(['describePcr'], { NSM_SHIM_REPLY: ERROR_INVALID_ARGUMENT });
  assert.deepEqual(refused, { ok: false, name: 'NsmError', code: 'InvalidArgument' });
  const sent = readFileSync(record, 'utf8').trim().split('\n');
  assert.match(sent[0]!, new RegExp(`^req=${GET_RANDOM} cap=12288 `));
  assert.match(sent[1]!, new RegExp(`^req=${DESCRIBE_PCR0} cap=12288 `));
});
