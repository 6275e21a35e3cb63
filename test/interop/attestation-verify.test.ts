// cloister's attestation verifier (src/attestation/verify.ts) against an independent one built from
// AWS's published crates (aws-nitro-enclaves-cose, aws-nitro-enclaves-nsm-api) and OpenSSL's X509 store:
// test/interop/rust. Both must give the same verdict on the six real AWS documents, on documents from
// cloister's software NSM, and on tampered copies of each.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { AWS_NITRO_ROOT_G1_PEM } from '../../src/attestation/roots.ts';
import { verifyAttestation } from '../../src/attestation/verify.ts';
import { openSoftwareNsm } from '../../src/nsm/software.ts';
import { runRust, rustProgram } from './toolchains.ts';

const vector = (name: string) => readFileSync(new URL(`../vectors/${name}`, import.meta.url));
const AWS_DOCS = [
  'evervault_valid-attestation-doc.cbor',
  'evervault_beta_valid-attestation-doc.cbor',
  'evervault_beta_debug-mode-attestation-doc.cbor',
  'blocky_nitro_attestation.cbor',
  'blocky_nitro_attestation_debug.cbor',
  'choracle_readme_attestation_2026-04-22.cbor',
];
const HOUR = 3600_000;

interface Case {
  name: string;
  doc: Uint8Array;
  rootPem: string;
  /** Validation clock in ms; null = the document's own timestamp. */
  atMs: number | null;
  expectOk: boolean;
}
interface RustVerdict {
  ok: boolean;
  error?: string;
  pcr0?: string;
  timestamp?: number;
}

function flip(doc: Uint8Array, at: number): Buffer {
  const out = Buffer.from(doc);
  out[at] = out[at]! ^ 0x01;
  return out;
}

/** The good document, and copies that every verifier must refuse. */
function cases(name: string, doc: Buffer, rootPem: string, otherRootPem: string, pcr0: Buffer): Case[] {
  const timestamp = null; // validate at the document's own time
  // A byte of the signed payload: the first place PCR0's value occurs (all zeros in debug documents).
  const pcrAt = doc.indexOf(pcr0);
  assert.ok(pcrAt > 0, `${name}: PCR0 found in the payload`);
  // Protected header `a1 01 38 22` ({1: -35}, ES384) sits right after `84 44`.
  assert.deepEqual(
    [...doc.subarray(0, 6)],
    [0x84, 0x44, 0xa1, 0x01, 0x38, 0x22],
    `${name}: COSE_Sign1 shape`,
  );
  return [
    { name: `${name}`, doc, rootPem, atMs: timestamp, expectOk: true },
    {
      name: `${name} signature bit`,
      doc: flip(doc, doc.length - 1),
      rootPem,
      atMs: timestamp,
      expectOk: false,
    },
    { name: `${name} payload bit`, doc: flip(doc, pcrAt + 7), rootPem, atMs: timestamp, expectOk: false },
    { name: `${name} alg ES512`, doc: flip(doc, 5), rootPem, atMs: timestamp, expectOk: false },
    {
      name: `${name} truncated`,
      doc: doc.subarray(0, doc.length - 20),
      rootPem,
      atMs: timestamp,
      expectOk: false,
    },
    { name: `${name} other root`, doc, rootPem: otherRootPem, atMs: timestamp, expectOk: false },
  ];
}

async function cloisterVerdict(
  c: Case,
): Promise<{ ok: boolean; error?: string; pcr0?: string; timestamp?: number }> {
  try {
    const r = await verifyAttestation(c.doc, {
      rootPem: c.rootPem,
      at: c.atMs === null ? 'timestamp' : new Date(c.atMs),
    });
    return { ok: true, pcr0: r.pcrs.get(0)?.toString('hex'), timestamp: r.timestamp };
  } catch (err) {
    return { ok: false, error: String(err) };
  }
}

async function agree(all: Case[]): Promise<void> {
  const rust = runRust(
    rustProgram(),
    'verify-attestation',
    all.map((c) => ({ doc: Buffer.from(c.doc).toString('base64'), root_pem: c.rootPem, at_ms: c.atMs })),
  ) as RustVerdict[];
  assert.equal(rust.length, all.length);
  for (const [i, c] of all.entries()) {
    const ours = await cloisterVerdict(c);
    const theirs = rust[i]!;
    assert.equal(theirs.ok, c.expectOk, `${c.name}: Rust verifier says ${JSON.stringify(theirs)}`);
    assert.equal(ours.ok, c.expectOk, `${c.name}: cloister says ${JSON.stringify(ours)}`);
    if (c.expectOk) {
      assert.equal(theirs.pcr0, ours.pcr0, `${c.name}: PCR0`);
      assert.equal(theirs.timestamp, ours.timestamp, `${c.name}: timestamp`);
    }
  }
}

test('six real AWS documents: the Rust verifier and cloister agree on good, tampered, expired and wrong-root', async () => {
  const nsm = await openSoftwareNsm({ stateDir: null });
  const softwareRoot = nsm.rootPem;
  await nsm.close();
  const all: Case[] = [];
  for (const name of AWS_DOCS) {
    const doc = vector(name);
    const good = await verifyAttestation(doc, { at: 'timestamp' });
    all.push(...cases(name, doc, AWS_NITRO_ROOT_G1_PEM, softwareRoot, good.pcrs.get(0)!));
    // Outside the chain window (leaf certificates live 3 h): before and after, and today.
    all.push({
      name: `${name} +4h`,
      doc,
      rootPem: AWS_NITRO_ROOT_G1_PEM,
      atMs: good.timestamp + 4 * HOUR,
      expectOk: false,
    });
    all.push({
      name: `${name} -1h`,
      doc,
      rootPem: AWS_NITRO_ROOT_G1_PEM,
      atMs: good.timestamp - HOUR,
      expectOk: false,
    });
    all.push({ name: `${name} now`, doc, rootPem: AWS_NITRO_ROOT_G1_PEM, atMs: Date.now(), expectOk: false });
    all.push({
      name: `${name} +1min`,
      doc,
      rootPem: AWS_NITRO_ROOT_G1_PEM,
      atMs: good.timestamp + 60_000,
      expectOk: true,
    });
  }
  assert.equal(all.length, 6 * 10);
  await agree(all);
});

test('software NSM documents: the Rust verifier accepts them with the software root, both refuse tampering', async () => {
  const pcr0 = '3c'.repeat(48);
  const nsm = await openSoftwareNsm({ stateDir: null, pcrs: { '0': pcr0, '1': '4d'.repeat(48) } });
  try {
    const all: Case[] = [];
    const plain = Buffer.from(await nsm.attestation({}));
    const full = Buffer.from(
      await nsm.attestation({
        nonce: Buffer.alloc(1024, 7),
        user_data: Buffer.from('interop'),
        public_key: Buffer.alloc(300, 9),
      }),
    );
    all.push(...cases('software NSM', plain, nsm.rootPem, AWS_NITRO_ROOT_G1_PEM, Buffer.from(pcr0, 'hex')));
    all.push(
      ...cases(
        'software NSM, all fields',
        full,
        nsm.rootPem,
        AWS_NITRO_ROOT_G1_PEM,
        Buffer.from(pcr0, 'hex'),
      ),
    );
    all.push({
      name: 'software NSM now',
      doc: plain,
      rootPem: nsm.rootPem,
      atMs: Date.now(),
      expectOk: true,
    });
    all.push({
      name: 'software NSM +4h',
      doc: plain,
      rootPem: nsm.rootPem,
      atMs: Date.now() + 4 * HOUR,
      expectOk: false,
    });
    await agree(all);
  } finally {
    await nsm.close();
  }
});
