// The software NSM through the real CBOR client: PCR semantics, random, documents that verify with
// its own root (and not with AWS's), a root that survives restarts, leaf and CA rotation.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeDocument } from '../../../src/attestation/document.ts';
import { verifyAttestation } from '../../../src/attestation/verify.ts';
import { parseCertificate } from '../../../src/attestation/x509.ts';
import { cborDecode } from '../../../src/nsm/codec.ts';
import { openNsm } from '../../../src/nsm/index.ts';
import { SoftwareNsm } from '../../../src/nsm/software.ts';
import { tempDir } from '../../helpers/fixtures/temp-dir.ts';

const PCR0 = 'a1'.repeat(48);

test('DescribeNSM, PCR lock/extend semantics and GetRandom', async () => {
  const nsm = (await SoftwareNsm.open({ stateDir: null, pcrs: { '0': PCR0 } })).client();
  const d = await nsm.describeNsm();
  assert.equal(d.max_pcrs, 32);
  assert.equal(d.digest, 'SHA384');
  assert.deepEqual(d.locked_pcrs, [...Array(16).keys()]);
  assert.match(d.module_id, /^i-[0-9a-f]+-enc[0-9a-f]+$/);

  assert.deepEqual(await nsm.describePcr(0), { lock: true, data: Buffer.from(PCR0, 'hex') });
  assert.deepEqual(await nsm.describePcr(16), { lock: false, data: Buffer.alloc(48) });
  await assert.rejects(nsm.describePcr(32), { code: 'InvalidIndex' });
  await assert.rejects(nsm.extendPcr(3, Buffer.from('x')), { code: 'ReadOnlyIndex' });
  await assert.rejects(nsm.lockPcr(0), { name: 'NsmError' });

  const ext = await nsm.extendPcr(16, Buffer.from('hello'));
  const want = createHash('sha384').update(Buffer.alloc(48)).update('hello').digest();
  assert.deepEqual(Buffer.from(ext), want);
  const ext2 = await nsm.extendPcr(16, Buffer.from('again'));
  assert.deepEqual(Buffer.from(ext2), createHash('sha384').update(want).update('again').digest());
  assert.deepEqual((await nsm.describePcr(16)).data, ext2);

  await nsm.lockPcr(16);
  await assert.rejects(nsm.extendPcr(16, Buffer.from('x')), { code: 'ReadOnlyIndex' });
  assert.deepEqual((await nsm.describeNsm()).locked_pcrs, [...Array(17).keys()]);
  await assert.rejects(nsm.lockPcrs(33), { code: 'InvalidIndex' });
  await nsm.lockPcrs(32);
  assert.equal((await nsm.describeNsm()).locked_pcrs.length, 32);
  await assert.rejects(nsm.extendPcr(31, Buffer.from('x')), { code: 'ReadOnlyIndex' });

  const r1 = await nsm.getRandom();
  const r2 = await nsm.getRandom();
  assert.equal(r1.length, 256);
  assert.notDeepEqual(r1, r2);
});

test('documents carry the request, the nine keys in order, and verify with the software root only', async (t) => {
  const sw = await SoftwareNsm.open({
    stateDir: tempDir(t, 'cloister-swnsm-'),
    pcrs: { '0': PCR0, '8': 'b2'.repeat(48) },
  });
  const nsm = sw.client();
  const nonce = Buffer.from('n0nce');
  const userData = Buffer.alloc(1024, 9);
  const before = Date.now();
  const doc = await nsm.attestation({ nonce, user_data: userData });
  const after = Date.now();

  // Envelope as the real NSM sends it: untagged COSE_Sign1, protected {1:-35}, empty unprotected.
  assert.equal(Buffer.from(doc).subarray(0, 7).toString('hex'), '8444a1013822a0');
  const payload = cborDecode((cborDecode(doc) as Buffer[])[2]!) as Map<string, unknown>;
  assert.deepEqual(
    [...payload.keys()],
    [
      'module_id',
      'digest',
      'timestamp',
      'pcrs',
      'certificate',
      'cabundle',
      'public_key',
      'user_data',
      'nonce',
    ],
  );
  assert.equal(payload.get('public_key'), null);

  const v = await verifyAttestation(doc, {
    rootPem: sw.rootPem,
    nonce,
    userData,
    rejectDebug: true,
    maxAgeMs: 60_000,
  });
  assert.ok(v.timestamp >= before && v.timestamp <= after, 'timestamp in ms, taken now');
  assert.deepEqual(v.nonce, nonce);
  assert.deepEqual(v.userData, userData);
  assert.equal(v.publicKey, null);
  assert.equal(v.pcrs.size, 16);
  assert.deepEqual(v.pcrs.get(0), Buffer.from(PCR0, 'hex'));
  assert.deepEqual(v.pcrs.get(8), Buffer.from('b2'.repeat(48), 'hex'));
  assert.deepEqual(v.pcrs.get(1), Buffer.alloc(48));
  assert.equal(v.cabundle.length, 4);
  assert.deepEqual(v.cabundle[0], sw.rootDer);
  // The leaf lives 3 hours, like AWS's.
  const leaf = parseCertificate(v.certificate);
  assert.equal(leaf.notAfter.value.getTime() - leaf.notBefore.value.getTime(), 3 * 3600_000);

  await assert.rejects(verifyAttestation(doc), { name: 'AttestationError', check: 'chain' });
  const other = await SoftwareNsm.open({ stateDir: null });
  await assert.rejects(verifyAttestation(doc, { rootPem: other.rootPem }), { check: 'chain' });
});

test('an unconfigured software NSM is a debug-mode enclave', async () => {
  const sw = await SoftwareNsm.open({ stateDir: null });
  const doc = await sw.client().attestation({});
  await verifyAttestation(doc, { rootPem: sw.rootPem });
  await assert.rejects(verifyAttestation(doc, { rootPem: sw.rootPem, rejectDebug: true }), {
    check: 'debug',
  });
});

test('the root persists in the state directory (atomically created, shared by concurrent openers)', async (t) => {
  const dir = tempDir(t, 'cloister-swnsm-');
  const [a, b] = await Promise.all([
    SoftwareNsm.open({ stateDir: dir }),
    SoftwareNsm.open({ stateDir: dir }),
  ]);
  assert.equal(a.rootPem, b.rootPem, 'two processes starting at once agree on one root');
  assert.equal(readFileSync(join(dir, 'root.pem'), 'utf8'), a.rootPem);
  assert.equal(statSync(join(dir, 'root-key.pem')).mode & 0o077, 0, 'private key not readable by others');
  const docA = await a.client().attestation({});

  const reopened = await openNsm({ kind: 'software', device_path: '/dev/nsm', state_dir: dir, pcrs: {} });
  const docB = await reopened.attestation({});
  await reopened.close();
  // A new process (new module id, new intermediates) still chains to the same root.
  await verifyAttestation(docA, { rootPem: a.rootPem });
  await verifyAttestation(docB, { rootPem: a.rootPem });
  assert.notEqual(decodeDocument(docA).moduleId, decodeDocument(docB).moduleId);
  assert.deepEqual(readdirSync(dir).sort(), ['root-key.pem', 'root.pem'], 'no temporary files left behind');
});

test('the leaf rotates, and intermediates are reissued before they could outlive their use', async () => {
  let now = Date.parse('2030-01-01T00:00:00Z');
  const sw = await SoftwareNsm.open({ stateDir: null, now: () => now, leafRotateMs: 30 * 60_000 });
  const nsm = sw.client();
  const leafOf = async () => decodeDocument(await nsm.attestation({})).certificate.toString('hex');

  const first = await leafOf();
  now += 10 * 60_000;
  assert.equal(await leafOf(), first, 'reused within the rotation period');
  now += 25 * 60_000;
  const second = await leafOf();
  assert.notEqual(second, first, 'rotated after 30 minutes');

  // Weeks later every certificate in the chain has been renewed and the document is valid then.
  for (const days of [1, 4, 19, 45]) {
    now += days * 86_400_000;
    const doc = await nsm.attestation({ nonce: Buffer.from([days]) });
    const v = await verifyAttestation(doc, { rootPem: sw.rootPem, at: new Date(now + 2 * 3600_000) });
    assert.equal(v.timestamp, now);
  }
});

test('the raw handler answers malformed requests with an NSM error, not an exception', async () => {
  const sw = await SoftwareNsm.open({ stateDir: null });
  const reply = async (hex: string) => cborDecode(await sw.raw(Buffer.from(hex, 'hex')));
  assert.deepEqual(await reply('ff'), new Map([['Error', 'InvalidArgument']]));
  assert.deepEqual(await reply('6548656c6c6f'), new Map([['Error', 'InvalidArgument']])); // "Hello"
  assert.deepEqual(
    await reply('a16b4465736372696265504352a165696e6465781864'),
    new Map([['Error', 'InvalidIndex']]),
  );
  // A 1025-byte nonce is refused by the NSM itself as well as by the client.
  const big = Buffer.concat([
    Buffer.from('a16b4174746573746174696f6ea369757365725f64617461f6656e6f6e6365590401', 'hex'),
    Buffer.alloc(1025),
    Buffer.from('6a7075626c69635f6b6579f6', 'hex'),
  ]);
  assert.deepEqual(cborDecode(await sw.raw(big)), new Map([['Error', 'InputTooLarge']]));
});

test('bad PCR configuration is refused with the key named', async () => {
  await assert.rejects(SoftwareNsm.open({ stateDir: null, pcrs: { '0': 'abcd' } }), /nsm\.pcrs\.0/);
  await assert.rejects(SoftwareNsm.open({ stateDir: null, pcrs: { '32': PCR0 } }), /nsm\.pcrs: 32/);
});
