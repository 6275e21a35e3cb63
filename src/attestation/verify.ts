// Verification of NSM attestation documents (docs/reference/nitro.md, "Verifying a document"): decode and
// syntax checks, the ES384 COSE signature over the payload bytes as received, PKIX validation of the
// certificate chain to a pinned root at a chosen time, then the caller's policy (PCRs, nonce, key, age, debug
// mode).
import {
  createHash,
  createPublicKey,
  verify as cryptoVerify,
  type KeyObject,
  timingSafeEqual,
} from 'node:crypto';
import * as pkijs from 'pkijs';
import { cborEncode } from '../encoding/cbor.ts';
import { type AttestationDocument, AttestationError, decodeDocument } from './document.ts';
import { AWS_NITRO_ROOT_G1_PEM } from './roots.ts';
import { clearParsedCertificates, findExtension, parseCertificate, pemBlocks, spkiDer } from './x509.ts';

export {
  type AttestationCheck,
  type AttestationDocument,
  AttestationError,
  decodeDocument,
} from './document.ts';

export interface VerifyOptions {
  /** PEM of the trusted root(s); default the AWS Nitro Enclaves Root G1. */
  rootPem?: string;
  /** Validation time for the chain (default now); 'timestamp' uses the document's own, after the signature check. */
  at?: Date | 'timestamp';
  /** Expected PCR values (index -> bytes or hex). */
  pcrs?: Map<number, Uint8Array | string> | Record<number, Uint8Array | string>;
  nonce?: Uint8Array;
  /** Expected public_key (DER SubjectPublicKeyInfo as sent to the NSM). */
  publicKey?: Uint8Array;
  userData?: Uint8Array;
  /** Reject documents older than this, measured from `at` (or now). */
  maxAgeMs?: number;
  /** Reject debug-mode enclaves (PCR0 all zeros). */
  rejectDebug?: boolean;
}

export type VerifiedAttestation = AttestationDocument;

const BC_OID = '2.5.29.19';
const KU_OID = '2.5.29.15';
/** Allowed clock difference for documents from the future when maxAgeMs is checked. */
const FUTURE_SKEW_MS = 60_000;

function fail(check: ConstructorParameters<typeof AttestationError>[0], message: string): never {
  throw new AttestationError(check, message);
}

const rootCache = new Map<string, pkijs.Certificate[]>();

function trustedRoots(pem: string): pkijs.Certificate[] {
  const hit = rootCache.get(pem);
  if (hit) return hit;
  let roots: pkijs.Certificate[];
  try {
    roots = pemBlocks(pem, 'CERTIFICATE').map((d) => parseCertificate(d));
  } catch (err) {
    fail('root', `cannot read the root certificate: ${(err as Error).message}`);
  }
  if (roots.length === 0) fail('root', 'no CERTIFICATE in the root PEM');
  if (rootCache.size > 16) rootCache.clear();
  rootCache.set(pem, roots);
  return roots;
}

/** KeyUsage bit n set? (bit 0 is the most significant bit of the first byte) */
function kuBit(ext: pkijs.Extension | undefined, bit: number): boolean | undefined {
  if (!ext) return undefined;
  const bs = ext.parsedValue as { valueBlock?: { valueHexView?: Uint8Array } } | undefined;
  const bytes = bs?.valueBlock?.valueHexView;
  if (!bytes) return false;
  return (((bytes[bit >> 3] ?? 0) >> (7 - (bit & 7))) & 1) === 1;
}

function basicConstraints(cert: pkijs.Certificate): { ca: boolean; pathLen?: number } {
  const ext = findExtension(cert, BC_OID);
  if (!ext) return { ca: false };
  const bc = ext.parsedValue as pkijs.BasicConstraints | undefined;
  const pathLen = typeof bc?.pathLenConstraint === 'number' ? bc.pathLenConstraint : undefined;
  return { ca: bc?.cA === true, pathLen };
}

/** Basic constraints and key usage along [leaf, ..., root] (docs/reference/nitro.md, "Verifying a document", 4). */
function checkConstraints(path: pkijs.Certificate[]): void {
  path.forEach((cert, i) => {
    const bc = basicConstraints(cert);
    const ku = findExtension(cert, KU_OID);
    if (i === 0) {
      if (bc.ca) fail('chain', 'leaf certificate is a CA');
      if (kuBit(ku, 0) === false) fail('chain', 'leaf certificate lacks digitalSignature key usage');
      return;
    }
    if (!bc.ca) fail('chain', `certificate ${i} in the path is not a CA`);
    if (kuBit(ku, 5) === false) fail('chain', `CA certificate ${i} lacks keyCertSign key usage`);
    // pathLen counts the intermediate CAs that may follow this one (i - 1 of them here).
    if (bc.pathLen !== undefined && bc.pathLen < i - 1) {
      fail('chain', `CA certificate ${i} allows a path of ${bc.pathLen} below it, found ${i - 1}`);
    }
  });
}

function certDer(cert: pkijs.Certificate): Buffer {
  return Buffer.from(cert.toSchema(false).toBER(false));
}

/**
 * CA paths that pkijs validated, so the next document under the same bundle (AWS reuses a leaf's
 * CAs for days, the leaf itself for minutes) only needs its leaf checked. Keyed by the trusted
 * roots, the whole cabundle and the leaf's issuer name; used only while `at` lies inside every CA's
 * validity. Any miss or doubt falls back to full pkijs validation, so the cache can only make a
 * success cheaper, never turn a failure into one.
 */
interface CaPath {
  /** [issuer of the leaf, ..., root] as pkijs built and validated it. */
  cas: pkijs.Certificate[];
  issuerKey: KeyObject;
  notBefore: number;
  notAfter: number;
}
const caPaths = new Map<string, CaPath>();
const CA_CACHE_MAX = 256;
const ECDSA_WITH_SHA384 = '1.2.840.10045.4.3.3';
const KNOWN_CRITICAL = new Set([BC_OID, KU_OID]);

function caPathKey(rootPem: string, doc: AttestationDocument, leaf: pkijs.Certificate): string {
  const h = createHash('sha256').update(rootPem).update('\0');
  for (const c of doc.cabundle) h.update(String(c.length)).update(':').update(c);
  h.update('\0').update(Buffer.from(leaf.issuer.toSchema().toBER(false)));
  return h.digest('hex');
}

/** The last step of path validation (issuer signature, names, validity, extensions) for one leaf. */
function leafUnderCachedPath(ca: CaPath, leaf: pkijs.Certificate, at: Date): boolean {
  const t = at.getTime();
  if (t < ca.notBefore || t > ca.notAfter) return false;
  if (t < leaf.notBefore.value.getTime() || t > leaf.notAfter.value.getTime()) return false;
  if (leaf.signatureAlgorithm.algorithmId !== ECDSA_WITH_SHA384) return false;
  if (leaf.signature.algorithmId !== ECDSA_WITH_SHA384) return false;
  if (leaf.extensions?.some((e) => e.critical && !KNOWN_CRITICAL.has(e.extnID))) return false;
  const issuer = ca.cas[0]!;
  if (
    !Buffer.from(leaf.issuer.toSchema().toBER(false)).equals(
      Buffer.from(issuer.subject.toSchema().toBER(false)),
    )
  ) {
    return false;
  }
  const sig = leaf.signatureValue.valueBlock.valueHexView;
  return cryptoVerify('sha384', leaf.tbsView, ca.issuerKey, sig);
}

/** Forget validated CA paths and parsed certificates (benchmarks measure the cold path with this). */
export function clearVerifierCaches(): void {
  caPaths.clear();
  rootCache.clear();
  clearParsedCertificates();
}

async function checkChain(doc: AttestationDocument, rootPem: string, at: Date): Promise<void> {
  const roots = trustedRoots(rootPem);
  const leaf = parseCertificate(doc.certificate);
  const key = caPathKey(rootPem, doc, leaf);
  const cached = caPaths.get(key);
  if (cached && leafUnderCachedPath(cached, leaf, at)) {
    checkConstraints([leaf, ...cached.cas]);
    return;
  }
  const engine = new pkijs.CertificateChainValidationEngine({
    trustedCerts: roots,
    // pkijs takes the LAST certificate as the end entity. The bundle's own root (cabundle[0]) is
    // never trusted by itself: a path must end at one of the pinned roots.
    certs: [...doc.cabundle.map((c) => parseCertificate(c)), leaf],
    checkDate: at,
  });
  let result: pkijs.CertificateChainValidationEngineVerifyResult;
  try {
    result = await engine.verify();
  } catch (err) {
    const e = err as { resultMessage?: string; message?: string };
    fail('chain', e.resultMessage || e.message || String(err));
  }
  if (!result.result) {
    fail('chain', `${result.resultMessage || 'chain does not validate'} (at ${at.toISOString()})`);
  }
  // The path is [leaf, ..., root]; insist it starts at the document's own certificate.
  const path = result.certificatePath ?? [];
  if (!path[0] || !certDer(path[0]).equals(doc.certificate)) {
    fail('chain', 'path does not start at the leaf certificate');
  }
  if (path.length < 2) fail('chain', 'certificate path does not reach the root');
  checkConstraints(path);

  const cas = path.slice(1);
  if (caPaths.size >= CA_CACHE_MAX) caPaths.delete(caPaths.keys().next().value as string);
  caPaths.set(key, {
    cas,
    issuerKey: createPublicKey({ key: spkiDer(cas[0]!), format: 'der', type: 'spki' }),
    notBefore: Math.max(...cas.map((c) => c.notBefore.value.getTime())),
    notAfter: Math.min(...cas.map((c) => c.notAfter.value.getTime())),
  });
}

function checkSignature(doc: ReturnType<typeof decodeDocument>): void {
  let key: ReturnType<typeof createPublicKey>;
  try {
    key = createPublicKey({ key: spkiDer(parseCertificate(doc.certificate)), format: 'der', type: 'spki' });
  } catch (err) {
    fail('signature', `leaf certificate key is unusable: ${(err as Error).message}`);
  }
  if (key.asymmetricKeyType !== 'ec' || key.asymmetricKeyDetails?.namedCurve !== 'secp384r1') {
    fail('signature', 'leaf certificate key is not ECDSA P-384');
  }
  // Sig_structure = ["Signature1", protected, external_aad = h'', payload] over the bytes as received.
  const toBeSigned = cborEncode(['Signature1', doc.protectedBytes, Buffer.alloc(0), doc.payloadBytes]);
  const ok = cryptoVerify('sha384', toBeSigned, { key, dsaEncoding: 'ieee-p1363' }, doc.signature);
  if (!ok) fail('signature', 'ES384 signature does not verify with the leaf certificate key');
}

function toBytes(v: Uint8Array | string, what: string): Buffer {
  if (typeof v !== 'string') return Buffer.from(v);
  const hex = v.replace(/^0x/i, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(hex)) throw new TypeError(`${what}: not hex`);
  return Buffer.from(hex, 'hex');
}

function equal(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

function hex(b: Uint8Array | null): string {
  return b ? Buffer.from(b).toString('hex') : 'null';
}

function checkPolicy(doc: AttestationDocument, opts: VerifyOptions, at: Date): void {
  if (opts.pcrs) {
    const entries = opts.pcrs instanceof Map ? [...opts.pcrs] : Object.entries(opts.pcrs);
    for (const [k, v] of entries) {
      const index = Number(k);
      const want = toBytes(v, `PCR${index}`);
      const got = doc.pcrs.get(index);
      if (!got) fail('pcr', `PCR${index} is not in the document`);
      if (!equal(got, want)) fail('pcr', `PCR${index} is ${hex(got)}, expected ${hex(want)}`);
    }
  }
  if (opts.nonce && !(doc.nonce && equal(doc.nonce, opts.nonce))) {
    fail('nonce', `nonce is ${hex(doc.nonce)}, expected ${hex(opts.nonce)}`);
  }
  if (opts.publicKey && !(doc.publicKey && equal(doc.publicKey, opts.publicKey))) {
    fail(
      'public_key',
      doc.publicKey ? 'public_key differs from the expected key' : 'document has no public_key',
    );
  }
  if (opts.userData && !(doc.userData && equal(doc.userData, opts.userData))) {
    fail('user_data', `user_data is ${hex(doc.userData)}, expected ${hex(opts.userData)}`);
  }
  if (opts.maxAgeMs !== undefined) {
    if (!Number.isFinite(opts.maxAgeMs) || opts.maxAgeMs < 0)
      throw new TypeError('verifyAttestation: invalid maxAgeMs');
    const age = at.getTime() - doc.timestamp;
    if (age > opts.maxAgeMs)
      fail(
        'age',
        `document is ${Math.round(age / 1000)} s old (at most ${Math.round(opts.maxAgeMs / 1000)} s)`,
      );
    if (age < -FUTURE_SKEW_MS)
      fail('age', `document timestamp is ${Math.round(-age / 1000)} s in the future`);
  }
  if (opts.rejectDebug) {
    const pcr0 = doc.pcrs.get(0);
    if (!pcr0 || pcr0.every((b) => b === 0)) fail('debug', 'PCR0 is all zeros: a debug-mode enclave');
  }
}

/**
 * Verify an attestation document. Resolves with the decoded fields; rejects with AttestationError
 * naming the first failed check.
 */
export async function verifyAttestation(
  doc: Uint8Array,
  opts: VerifyOptions = {},
): Promise<VerifiedAttestation> {
  const rootPem = opts.rootPem ?? AWS_NITRO_ROOT_G1_PEM;
  trustedRoots(rootPem); // a bad root is reported as such before anything else
  const decoded = decodeDocument(doc);
  checkSignature(decoded);
  const at = opts.at === 'timestamp' ? new Date(decoded.timestamp) : (opts.at ?? new Date());
  // An Invalid Date compares false both ways and would pass every validity check.
  if (!(at instanceof Date) || Number.isNaN(at.getTime()))
    throw new TypeError('verifyAttestation: invalid `at` time');
  await checkChain(decoded, rootPem, at);
  checkPolicy(decoded, opts, opts.at === 'timestamp' ? new Date() : at);
  const { protectedBytes: _p, payloadBytes: _b, signature: _s, ...fields } = decoded;
  return fields;
}
