// verifyAttestation against the six real AWS documents in test/vectors (each valid only inside
// its chain window), tampered copies of them, crafted malformed documents and the software NSM.
import assert from 'node:assert/strict';
import { createHash, createPrivateKey, KeyObject, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { AWS_NITRO_ROOT_G1_PEM, AWS_NITRO_ROOT_G1_SHA256 } from '../../../src/attestation/roots.ts';
import { AttestationError, decodeDocument, verifyAttestation } from '../../../src/attestation/verify.ts';
import { parseCertificate, pemToDer } from '../../../src/attestation/x509.ts';
import { exportPkcs8, generateP384, issueCertificate, KU } from '../../../src/nsm/ca.ts';
import { cborDecode, cborEncode } from '../../../src/nsm/codec.ts';
import { SoftwareNsm } from '../../../src/nsm/software.ts';

const vec = (name: string) => readFileSync(new URL(`../../vectors/${name}`, import.meta.url));

/** File, a time inside its chain window (vectors/README.md), debug mode, payload map encoding. */
const VECTORS = [
  {
    file: 'evervault_valid-attestation-doc.cbor',
    at: '2023-09-18T15:03:30.860Z',
    debug: true,
    b64: 'evervault_valid-attestation-doc-base64.txt',
  },
  { file: 'evervault_beta_valid-attestation-doc.cbor', at: '2022-10-13T08:58:02.136Z', debug: false },
  { file: 'evervault_beta_debug-mode-attestation-doc.cbor', at: '2022-10-12T13:50:06.081Z', debug: true },
  {
    file: 'blocky_nitro_attestation.cbor',
    at: '2024-09-07T14:37:39.545Z',
    debug: false,
    b64: 'blocky_nitro_attestation.b64',
  },
  {
    file: 'blocky_nitro_attestation_debug.cbor',
    at: '2024-09-07T14:38:06.508Z',
    debug: true,
    b64: 'blocky_nitro_attestation_debug.b64',
  },
  {
    file: 'choracle_readme_attestation_2026-04-22.cbor',
    at: '2026-04-22T20:47:56.189Z',
    debug: false,
    b64: 'choracle_readme_attestation_2026-04-22.b64',
  },
];

async function rejectsWith(p: Promise<unknown>, check: string | RegExp, what: string): Promise<void> {
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AttestationError, `${what}: ${String(e)}`);
    if (typeof check === 'string') assert.equal(e.check, check, `${what}: ${e.check}: ${e.message}`);
    else assert.match(e.check, check, `${what}: ${e.check}: ${e.message}`);
    return true;
  });
}

test('the embedded root is the AWS Nitro Enclaves Root G1 (by DER SHA-256)', () => {
  const der = pemToDer(AWS_NITRO_ROOT_G1_PEM, 'CERTIFICATE');
  assert.equal(createHash('sha256').update(der).digest('hex'), AWS_NITRO_ROOT_G1_SHA256);
  assert.equal(AWS_NITRO_ROOT_G1_SHA256, '641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b');
  assert.deepEqual(der, pemToDer(vec('aws_nitro_enclaves_root_g1.pem').toString(), 'CERTIFICATE'));
});

test('every real document verifies inside its chain window and fails now (expired leaf)', async () => {
  for (const v of VECTORS) {
    const doc = vec(v.file);
    const r = await verifyAttestation(doc, { at: new Date(v.at) });
    assert.equal(new Date(r.timestamp).toISOString(), v.at, v.file);
    assert.match(r.moduleId, /^i-[0-9a-f]+-enc[0-9a-f]+$/);
    assert.equal(r.digest, 'SHA384');
    assert.equal(r.pcrs.size, 16);
    assert.equal(r.cabundle.length, 4);
    assert.equal(createHash('sha256').update(r.cabundle[0]!).digest('hex'), AWS_NITRO_ROOT_G1_SHA256);
    // The document's own time works too (signature checked first).
    await verifyAttestation(doc, { at: 'timestamp' });
    await rejectsWith(verifyAttestation(doc), 'chain', `${v.file} now`);
    await rejectsWith(
      verifyAttestation(doc, { at: new Date(Date.parse(v.at) + 4 * 3600_000) }),
      'chain',
      `${v.file} +4h`,
    );
    // .equals, not deepEqual: cbor-x caches a DataView as a property on buffers it decoded.
    if (v.b64) assert.ok(Buffer.from(vec(v.b64).toString().trim(), 'base64').equals(doc), `${v.b64} matches`);
  }
});

test('fields: the 1024-byte blocky fields, evervault user_data, the indefinite-length choracle map', async () => {
  const blocky = await verifyAttestation(vec('blocky_nitro_attestation.cbor'), { at: 'timestamp' });
  for (const f of [blocky.publicKey, blocky.userData, blocky.nonce])
    assert.deepEqual(f, Buffer.alloc(1024, 1));
  const beta = await verifyAttestation(vec('evervault_beta_debug-mode-attestation-doc.cbor'), {
    at: 'timestamp',
  });
  assert.equal(beta.userData?.toString(), 'hello, world!');
  assert.equal(beta.publicKey?.toString(), 'my super secret key');
  assert.equal(beta.nonce, null);
  const choracle = vec('choracle_readme_attestation_2026-04-22.cbor');
  const payload = (cborDecode(choracle) as Buffer[])[2]!;
  assert.equal(payload[0], 0xbf, 'payload really is an indefinite-length map');
  const c = await verifyAttestation(choracle, { at: 'timestamp' });
  assert.equal(c.userData?.length, 48);
  assert.equal(c.nonce?.length, 32);
});

test('policy: PCRs, nonce, public key, user data, age, debug mode', async () => {
  const doc = vec('blocky_nitro_attestation.cbor');
  const at = new Date('2024-09-07T14:40:00Z');
  const r = await verifyAttestation(doc, { at });
  const pcr0 = r.pcrs.get(0)!;
  const ones = Buffer.alloc(1024, 1);
  await verifyAttestation(doc, {
    at,
    pcrs: { 0: pcr0.toString('hex'), 1: r.pcrs.get(1)!, 3: Buffer.alloc(48) },
    nonce: ones,
    publicKey: ones,
    userData: ones,
    maxAgeMs: 5 * 60_000,
    rejectDebug: true,
  });
  const wrong = Buffer.from(pcr0);
  wrong[47] = wrong[47]! ^ 1;
  await rejectsWith(verifyAttestation(doc, { at, pcrs: new Map([[0, wrong]]) }), 'pcr', 'pcr0');
  await rejectsWith(verifyAttestation(doc, { at, pcrs: { 20: Buffer.alloc(48) } }), 'pcr', 'absent pcr');
  await rejectsWith(verifyAttestation(doc, { at, nonce: Buffer.alloc(1024, 2) }), 'nonce', 'nonce');
  await rejectsWith(verifyAttestation(doc, { at, publicKey: Buffer.alloc(10) }), 'public_key', 'key');
  await rejectsWith(verifyAttestation(doc, { at, userData: Buffer.alloc(1) }), 'user_data', 'user_data');
  await rejectsWith(verifyAttestation(doc, { at, maxAgeMs: 60_000 }), 'age', 'age');
  await rejectsWith(
    verifyAttestation(doc, { at: new Date('2024-09-07T14:30:00Z'), maxAgeMs: 60_000 }),
    'chain',
    'before leaf',
  );
  for (const v of VECTORS) {
    const p = verifyAttestation(vec(v.file), { at: new Date(v.at), rejectDebug: true });
    if (v.debug) await rejectsWith(p, 'debug', v.file);
    else await p;
  }
});

test('flipping any single byte of the signature, the payload or a certificate fails', async () => {
  for (const v of VECTORS.filter((x) =>
    ['blocky_nitro_attestation.cbor', 'choracle_readme_attestation_2026-04-22.cbor'].includes(x.file),
  )) {
    const doc = vec(v.file);
    const at = new Date(v.at);
    const d = decodeDocument(doc);
    const sigStart = doc.length - 96;
    assert.deepEqual(doc.subarray(sigStart), d.signature);
    const payloadStart = doc.indexOf(d.payloadBytes);
    const certStart = doc.indexOf(d.certificate);
    const positions = new Set<number>();
    for (let i = 0; i < 96; i += 3) positions.add(sigStart + i); // a third of the signature
    for (let i = 0; i < 60; i++) positions.add(payloadStart + Math.floor((i * d.payloadBytes.length) / 60));
    for (let i = 0; i < 30; i++) positions.add(certStart + Math.floor((i * d.certificate.length) / 30));
    for (const c of d.cabundle.slice(1)) {
      const start = doc.indexOf(c);
      for (let i = 0; i < 10; i++) positions.add(start + Math.floor((i * c.length) / 10));
    }
    positions.add(0);
    positions.add(doc.length - 1);
    for (const pos of positions) {
      const bad = Buffer.from(doc);
      bad[pos] = (bad[pos] ?? 0) ^ 0x01;
      await rejectsWith(
        verifyAttestation(bad, { at }),
        /^(decode|cose|format|signature|chain)$/,
        `${v.file} byte ${pos}`,
      );
    }
    // The untouched document still passes (the loop above did not get lucky on a broken verifier).
    await verifyAttestation(doc, { at });
  }
});

test('COSE envelope: tag 18 accepted, other tags, algorithms and shapes refused', async () => {
  const doc = vec('evervault_beta_valid-attestation-doc.cbor');
  const at = 'timestamp' as const;
  await verifyAttestation(Buffer.concat([Buffer.from([0xd2]), doc]), { at });
  await rejectsWith(verifyAttestation(Buffer.concat([Buffer.from([0xd1]), doc]), { at }), 'cose', 'tag 17');
  const [prot, , payload, sig] = cborDecode(doc) as Buffer[];
  const rebuild = (items: unknown[]) => cborEncode(items);
  await rejectsWith(verifyAttestation(rebuild([prot, {}, payload]), { at }), 'cose', '3 items');
  await rejectsWith(
    verifyAttestation(rebuild([Buffer.from('a10126', 'hex'), {}, payload, sig]), { at }),
    'cose',
    'ES256',
  );
  await rejectsWith(
    verifyAttestation(rebuild([prot, {}, payload, sig!.subarray(1)]), { at }),
    'cose',
    'short sig',
  );
  await rejectsWith(verifyAttestation(Buffer.concat([doc, Buffer.from([0])]), { at }), 'decode', 'trailing');
  await rejectsWith(verifyAttestation(doc.subarray(0, 100), { at }), 'decode', 'truncated');
  await rejectsWith(verifyAttestation(Buffer.alloc(0), { at }), 'decode', 'empty');
  await rejectsWith(verifyAttestation(Buffer.from('not cbor at all'), { at }), /^(decode|cose)$/, 'text');
  // The choracle payload is an indefinite-length map; re-encoded (definite) it no longer verifies,
  // because the signature covers the payload bytes as received.
  const [cprot, , cpayload, csig] = cborDecode(
    vec('choracle_readme_attestation_2026-04-22.cbor'),
  ) as Buffer[];
  const reencoded = cborEncode(cborDecode(cpayload!));
  assert.notEqual(reencoded[0], cpayload![0]);
  await verifyAttestation(rebuild([cprot, {}, cpayload, csig]), { at });
  await rejectsWith(
    verifyAttestation(rebuild([cprot, {}, reencoded, csig]), { at }),
    'signature',
    're-encoded',
  );
});

test('syntactic checks on crafted payloads name the field', () => {
  const doc = vec('evervault_beta_valid-attestation-doc.cbor');
  const [prot, , payload, sig] = cborDecode(doc) as Buffer[];
  const base = cborDecode(payload!) as Map<string, unknown>;
  const craft = (edit: (m: Map<string, unknown>) => void) => {
    const m = new Map(base);
    edit(m);
    return cborEncode([prot, {}, cborEncode(m), sig]);
  };
  const cases: Array<[string, (m: Map<string, unknown>) => void, RegExp]> = [
    ['empty module_id', (m) => m.set('module_id', ''), /module_id/],
    ['digest SHA256', (m) => m.set('digest', 'SHA256'), /digest/],
    ['timestamp 0', (m) => m.set('timestamp', 0), /timestamp/],
    ['timestamp text', (m) => m.set('timestamp', '1'), /timestamp/],
    ['pcrs empty', (m) => m.set('pcrs', new Map()), /pcrs/],
    ['pcr index 32', (m) => m.set('pcrs', new Map([[32, Buffer.alloc(48)]])), /PCR index/],
    ['pcr 47 bytes', (m) => m.set('pcrs', new Map([[0, Buffer.alloc(47)]])), /PCR0/],
    ['certificate not DER', (m) => m.set('certificate', Buffer.from('3003020101ff', 'hex')), /certificate/],
    ['cabundle empty', (m) => m.set('cabundle', []), /cabundle/],
    ['cabundle entry text', (m) => m.set('cabundle', ['x']), /cabundle\[0\]/],
    ['nonce 1025', (m) => m.set('nonce', Buffer.alloc(1025)), /nonce/],
    ['user_data number', (m) => m.set('user_data', 5), /user_data/],
    ['public_key 1025', (m) => m.set('public_key', Buffer.alloc(1025)), /public_key/],
    ['payload not a map', (m) => m.clear(), /module_id/],
  ];
  for (const [name, edit, re] of cases) {
    assert.throws(
      () => decodeDocument(craft(edit)),
      (e: unknown) => e instanceof AttestationError && e.check === 'format' && re.test(e.message),
      name,
    );
  }
  // Absent optional keys are read as null (AWS's text says they may be omitted).
  const noOptionals = decodeDocument(
    craft((m) => {
      for (const k of ['public_key', 'user_data', 'nonce']) m.delete(k);
    }),
  );
  assert.equal(noOptionals.nonce, null);
});

test('software NSM documents: valid with its root, refused with AWS root, wrong or broken roots refused', async () => {
  const sw = await SoftwareNsm.open({ stateDir: null, pcrs: { '0': '11'.repeat(48) } });
  const doc = await sw.client().attestation({ nonce: Buffer.from('abc') });
  await verifyAttestation(doc, { rootPem: sw.rootPem, rejectDebug: true, nonce: Buffer.from('abc') });
  await rejectsWith(verifyAttestation(doc), 'chain', 'AWS root');
  // Trusting both roots at once is allowed (a PEM bundle).
  await verifyAttestation(doc, { rootPem: AWS_NITRO_ROOT_G1_PEM + sw.rootPem });
  await rejectsWith(verifyAttestation(doc, { rootPem: 'garbage' }), 'root', 'no PEM');
  await rejectsWith(
    verifyAttestation(vec('blocky_nitro_attestation.cbor'), { rootPem: sw.rootPem, at: 'timestamp' }),
    'chain',
    'AWS doc, software root',
  );
});

test('a forged leaf under a real CA name fails, whether or not that CA path was validated before', async () => {
  const sw = await SoftwareNsm.open({ stateDir: null, pcrs: { '0': '22'.repeat(48) } });
  const genuine = await sw.client().attestation({});
  const g = decodeDocument(genuine);
  const instanceCa = parseCertificate(g.cabundle[3]!);
  const at = new Date(g.timestamp);

  // A leaf naming the genuine instance CA as issuer, but signed by some other key.
  const leafKeys = await generateP384();
  const impostor = await generateP384();
  const forged = await issueCertificate({
    subject: [['CN', 'forged.nitro-enclaves']],
    publicKey: leafKeys.publicKey,
    issuer: instanceCa,
    signingKey: impostor.privateKey,
    notBefore: new Date(g.timestamp - 1000),
    notAfter: new Date(g.timestamp + 3600_000),
    ca: false,
    keyUsage: [KU.digitalSignature],
  });
  const payload = cborDecode((cborDecode(genuine) as Buffer[])[2]!) as Map<string, unknown>;
  payload.set('certificate', forged.der);
  const payloadBytes = cborEncode(payload);
  const protectedBytes = Buffer.from('a1013822', 'hex');
  const signer = KeyObject.from(leafKeys.privateKey);
  const sig = sign('sha384', cborEncode(['Signature1', protectedBytes, Buffer.alloc(0), payloadBytes]), {
    key: signer,
    dsaEncoding: 'ieee-p1363',
  });
  const forgedDoc = cborEncode([protectedBytes, {}, payloadBytes, sig]);

  // Cold: nothing about this bundle has been validated yet.
  await rejectsWith(verifyAttestation(forgedDoc, { rootPem: sw.rootPem, at }), 'chain', 'forged, cold');
  // Warm: the genuine document validates the same CA path first.
  await verifyAttestation(genuine, { rootPem: sw.rootPem, at });
  await rejectsWith(verifyAttestation(forgedDoc, { rootPem: sw.rootPem, at }), 'chain', 'forged, warm');
  // A validated path does not stretch the genuine leaf's life, nor start it early.
  await rejectsWith(
    verifyAttestation(genuine, { rootPem: sw.rootPem, at: new Date(g.timestamp + 3 * 3600_000 + 5000) }),
    'chain',
    'after leaf expiry',
  );
  await rejectsWith(
    verifyAttestation(genuine, { rootPem: sw.rootPem, at: new Date(g.timestamp - 10 * 60_000) }),
    'chain',
    'before leaf',
  );
  await verifyAttestation(genuine, { rootPem: sw.rootPem, at: new Date(g.timestamp + 3600_000) });
});

test('an invalid validation time is refused, not treated as always valid', async () => {
  const doc = vec('blocky_nitro_attestation.cbor');
  await verifyAttestation(doc, { at: 'timestamp' }); // warm the CA path cache too
  await assert.rejects(verifyAttestation(doc, { at: new Date('garbage') }), TypeError);
  await assert.rejects(verifyAttestation(doc, { at: 'timestamp', maxAgeMs: Number.NaN }), TypeError);
});

// A document is hostile input (the KMS emulator and the host side verify documents they are sent): whatever
// is wrong with it, verifyAttestation rejects with an AttestationError naming the check, never a parser error.
/** A document signed by a self-made leaf (so the signature check passes) with the given cabundle. */
async function forged(cabundle: Buffer[]): Promise<Buffer> {
  const keys = await generateP384();
  const now = Date.now();
  const leaf = await issueCertificate({
    subject: [['CN', 'forged']],
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    ca: false,
    keyUsage: [KU.digitalSignature],
  });
  const payload = cborEncode(
    new Map<string, unknown>([
      ['module_id', 'i-forged-enc0123456789abcdef'],
      ['digest', 'SHA384'],
      ['timestamp', now],
      ['pcrs', new Map([[0, Buffer.alloc(48)]])],
      ['certificate', leaf.der],
      ['cabundle', cabundle],
    ]),
  );
  const prot = cborEncode(new Map([[1, -35]]));
  const key = createPrivateKey({ key: await exportPkcs8(keys.privateKey), format: 'der', type: 'pkcs8' });
  const sig = sign('sha384', cborEncode(['Signature1', prot, Buffer.alloc(0), payload]), {
    key,
    dsaEncoding: 'ieee-p1363',
  });
  return cborEncode([prot, new Map(), payload, sig]);
}

test('a cabundle entry that is not a certificate is an AttestationError (format), not a parser crash', async () => {
  const rootPem = vec('aws_nitro_enclaves_root_g1.pem').toString('utf8');
  for (const bad of [
    Buffer.from([0x18, 0x01, 0x41]), // a malformed GeneralizedTime: asn1js throws instead of reporting
    Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]), // DER, but not a certificate
    Buffer.from([0x30, 0x80]), // truncated
  ]) {
    await assert.rejects(verifyAttestation(await forged([bad]), { rootPem }), (err: Error) => {
      assert.ok(err instanceof AttestationError, `${err.name}: ${err.message}`);
      assert.ok(
        ['format', 'chain'].includes((err as AttestationError).check),
        (err as AttestationError).check,
      );
      return true;
    });
  }
});
