// Decoding of NSM attestation documents: COSE_Sign1 (tag 18 or untagged) around a CBOR payload map (definite
// or indefinite length), with the syntactic checks AWS lists (docs/reference/nitro.md, "Verifying a
// document", step 2). Everything here is hostile input: every field is type- and size-checked before use.
import { Tag } from 'cbor-x';
import { ATTESTATION_FIELD_MAX } from '../constants.ts';
import { cborDecode } from '../encoding/cbor.ts';
import { type AttestationCheck, AttestationError } from '../errors.ts';
import { parseCertificate } from './x509.ts';

export { type AttestationCheck, AttestationError };

/** KMS accepts documents up to this size; real ones are 4-8 KiB. */
export const MAX_DOCUMENT_BYTES = 262144;
/** user_data, nonce and public_key: what the NSM accepts is what a document may carry. */
export const MAX_OPTIONAL_FIELD = ATTESTATION_FIELD_MAX;
const COSE_ALG_ES384 = -35;
const PCR_SIZES = new Set([32, 48, 64]);

export interface AttestationDocument {
  moduleId: string;
  digest: string;
  /** Milliseconds since the epoch. */
  timestamp: number;
  pcrs: Map<number, Buffer>;
  /** Leaf certificate, DER. */
  certificate: Buffer;
  /** DER certificates, root first. */
  cabundle: Buffer[];
  publicKey: Buffer | null;
  userData: Buffer | null;
  nonce: Buffer | null;
}

export interface DecodedDocument extends AttestationDocument {
  /** The COSE pieces exactly as received (the signature covers these bytes, not a re-encoding). */
  protectedBytes: Buffer;
  payloadBytes: Buffer;
  signature: Buffer;
}

function fail(check: AttestationCheck, message: string): never {
  throw new AttestationError(check, message);
}

function isBytes(v: unknown): v is Uint8Array {
  return v instanceof Uint8Array;
}

function optionalBytes(m: Map<unknown, unknown>, key: string): Buffer | null {
  if (!m.has(key)) return null;
  const v = m.get(key);
  if (v === null || v === undefined) return null;
  if (!isBytes(v)) fail('format', `${key} is not a byte string or null`);
  if (v.length > MAX_OPTIONAL_FIELD)
    fail('format', `${key} is ${v.length} bytes (at most ${MAX_OPTIONAL_FIELD})`);
  return Buffer.from(v);
}

function der(v: unknown, what: string): Buffer {
  if (!isBytes(v)) fail('format', `${what} is not a byte string`);
  if (v.length < 1 || v.length > 1024) fail('format', `${what} is ${v.length} bytes (1..1024)`);
  const buf = Buffer.from(v);
  try {
    parseCertificate(buf);
  } catch (err) {
    fail('format', `${what} is not a DER certificate: ${(err as Error).message}`);
  }
  return buf;
}

function decode(bytes: Uint8Array, what: string): unknown {
  try {
    return cborDecode(bytes);
  } catch (err) {
    fail('decode', `${what} is not valid CBOR: ${(err as Error).message}`);
  }
}

/** Decode and syntax-check a document; no cryptographic check. */
export function decodeDocument(bytes: Uint8Array): DecodedDocument {
  if (!isBytes(bytes) || bytes.length === 0) fail('decode', 'empty document');
  if (bytes.length > MAX_DOCUMENT_BYTES)
    fail('decode', `document is ${bytes.length} bytes (at most ${MAX_DOCUMENT_BYTES})`);
  let outer = decode(bytes, 'document');
  if (outer instanceof Tag) {
    if (outer.tag !== 18) fail('cose', `CBOR tag ${outer.tag} is not COSE_Sign1 (18)`);
    outer = outer.value;
  }
  if (!Array.isArray(outer) || outer.length !== 4) fail('cose', 'not a COSE_Sign1 array of 4 items');
  const [prot, unprot, payload, signature] = outer as unknown[];
  if (!isBytes(prot)) fail('cose', 'protected header is not a byte string');
  if (!(unprot instanceof Map)) fail('cose', 'unprotected header is not a map');
  if (!isBytes(payload)) fail('cose', 'payload is not a byte string');
  if (!isBytes(signature)) fail('cose', 'signature is not a byte string');
  const headers = decode(prot, 'protected header');
  if (!(headers instanceof Map)) fail('cose', 'protected header is not a map');
  const alg = headers.get(1);
  if (alg !== COSE_ALG_ES384) fail('cose', `algorithm ${String(alg)} is not ES384 (-35)`);
  if (signature.length !== 96) fail('cose', `ES384 signature is ${signature.length} bytes (96)`);

  const m = decode(payload, 'payload');
  if (!(m instanceof Map)) fail('format', 'payload is not a map');

  const moduleId = m.get('module_id');
  if (typeof moduleId !== 'string' || moduleId.length === 0) fail('format', 'module_id is missing or empty');
  const digest = m.get('digest');
  if (digest !== 'SHA384') fail('format', `digest is ${JSON.stringify(digest)}, expected "SHA384"`);
  const ts = m.get('timestamp');
  let timestamp: number;
  if (typeof ts === 'bigint' && ts > 0n && ts <= BigInt(Number.MAX_SAFE_INTEGER)) timestamp = Number(ts);
  else if (typeof ts === 'number' && Number.isInteger(ts) && ts > 0) timestamp = ts;
  else fail('format', 'timestamp is not a positive integer');

  const rawPcrs = m.get('pcrs');
  if (!(rawPcrs instanceof Map)) fail('format', 'pcrs is not a map');
  if (rawPcrs.size < 1 || rawPcrs.size > 32) fail('format', `pcrs has ${rawPcrs.size} entries (1..32)`);
  const pcrs = new Map<number, Buffer>();
  for (const [k, v] of rawPcrs) {
    if (typeof k !== 'number' || !Number.isInteger(k) || k < 0 || k >= 32)
      fail('format', `PCR index ${String(k)} is not in 0..31`);
    if (!isBytes(v) || !PCR_SIZES.has(v.length)) fail('format', `PCR${k} is not a 32/48/64-byte string`);
    pcrs.set(k, Buffer.from(v));
  }

  const certificate = der(m.get('certificate'), 'certificate');
  const rawBundle = m.get('cabundle');
  if (!Array.isArray(rawBundle) || rawBundle.length === 0) fail('format', 'cabundle is missing or empty');
  const cabundle = rawBundle.map((c, i) => der(c, `cabundle[${i}]`));

  return {
    protectedBytes: Buffer.from(prot),
    payloadBytes: Buffer.from(payload),
    signature: Buffer.from(signature),
    moduleId,
    digest,
    timestamp,
    pcrs,
    certificate,
    cabundle,
    publicKey: optionalBytes(m, 'public_key'),
    userData: optionalBytes(m, 'user_data'),
    nonce: optionalBytes(m, 'nonce'),
  };
}
