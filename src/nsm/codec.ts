// CBOR for the NSM request/response protocol, byte-for-byte what the NSM and its reference client
// (aws-nitro-enclaves-nsm-api, serde_cbor 0.11 with enum_as_map) produce: unit variants as a text
// string, struct variants as a 1-entry map {"Variant": {field: value, ...}} with fields in declaration
// order, definite lengths, shortest integers, byte buffers as major type 2, None as null with the key
// still present. Decoders accept a unit variant either as text or as a 1-key map.

import { ATTESTATION_FIELD_MAX, NSM_REQUEST_MAX_SIZE } from '../constants.ts';
import { cborDecode, cborEncode } from '../encoding/cbor.ts';
import { type DescribeNsm, type Digest, NsmError } from './types.ts';

export const NSM_ERROR_CODES = [
  'Success',
  'InvalidArgument',
  'InvalidIndex',
  'InvalidResponse',
  'ReadOnlyIndex',
  'InvalidOperation',
  'BufferTooSmall',
  'InputTooLarge',
  'InternalError',
] as const;
export type NsmErrorCode = (typeof NSM_ERROR_CODES)[number];

export type NsmRequest =
  | { type: 'DescribeNSM' }
  | { type: 'DescribePCR'; index: number }
  | { type: 'ExtendPCR'; index: number; data: Uint8Array }
  | { type: 'LockPCR'; index: number }
  | { type: 'LockPCRs'; range: number }
  | {
      type: 'Attestation';
      user_data: Uint8Array | null;
      nonce: Uint8Array | null;
      public_key: Uint8Array | null;
    }
  | { type: 'GetRandom' };

export type NsmResponse =
  | ({ type: 'DescribeNSM' } & DescribeNsm)
  | { type: 'DescribePCR'; lock: boolean; data: Uint8Array }
  | { type: 'ExtendPCR'; data: Uint8Array }
  | { type: 'LockPCR' }
  | { type: 'LockPCRs' }
  | { type: 'Attestation'; document: Uint8Array }
  | { type: 'GetRandom'; random: Uint8Array }
  | { type: 'Error'; code: string };

export { cborDecode, cborEncode };

function u16(what: string, n: number): number {
  if (!Number.isInteger(n) || n < 0 || n > 0xffff) {
    throw new NsmError('InvalidArgument', `${what} must be an integer in 0..65535, got ${n}`);
  }
  return n;
}

function field(name: string, v: Uint8Array | null | undefined): Uint8Array | null {
  if (v === undefined || v === null) return null;
  if (!(v instanceof Uint8Array)) throw new NsmError('InvalidArgument', `${name} must be bytes`);
  if (v.length > ATTESTATION_FIELD_MAX) {
    throw new NsmError(
      'InputTooLarge',
      `${name} is ${v.length} bytes; the NSM accepts at most ${ATTESTATION_FIELD_MAX}`,
    );
  }
  return v;
}

/** Encode a request; checks sizes before anything reaches the device. */
export function encodeRequest(req: NsmRequest): Buffer {
  let value: unknown;
  switch (req.type) {
    case 'DescribeNSM':
    case 'GetRandom':
      value = req.type;
      break;
    case 'DescribePCR':
    case 'LockPCR':
      value = { [req.type]: { index: u16('index', req.index) } };
      break;
    case 'ExtendPCR':
      if (!(req.data instanceof Uint8Array)) throw new NsmError('InvalidArgument', 'data must be bytes');
      value = { ExtendPCR: { index: u16('index', req.index), data: req.data } };
      break;
    case 'LockPCRs':
      value = { LockPCRs: { range: u16('range', req.range) } };
      break;
    case 'Attestation':
      value = {
        Attestation: {
          user_data: field('user_data', req.user_data),
          nonce: field('nonce', req.nonce),
          public_key: field('public_key', req.public_key),
        },
      };
      break;
    default:
      throw new NsmError('InvalidArgument', `unknown NSM request ${(req as { type: string }).type}`);
  }
  const out = cborEncode(value);
  if (out.length > NSM_REQUEST_MAX_SIZE) {
    throw new NsmError(
      'InputTooLarge',
      `request is ${out.length} bytes; the NSM accepts at most ${NSM_REQUEST_MAX_SIZE}`,
    );
  }
  return out;
}

/** Encode a response (used by the software NSM). */
export function encodeResponse(res: NsmResponse): Buffer {
  switch (res.type) {
    case 'LockPCR':
    case 'LockPCRs':
      return cborEncode(res.type);
    case 'Error':
      return cborEncode({ Error: res.code });
    case 'DescribeNSM':
      return cborEncode({
        DescribeNSM: {
          version_major: res.version_major,
          version_minor: res.version_minor,
          version_patch: res.version_patch,
          module_id: res.module_id,
          max_pcrs: res.max_pcrs,
          locked_pcrs: res.locked_pcrs,
          digest: res.digest,
        },
      });
    case 'DescribePCR':
      return cborEncode({ DescribePCR: { lock: res.lock, data: res.data } });
    case 'ExtendPCR':
      return cborEncode({ ExtendPCR: { data: res.data } });
    case 'Attestation':
      return cborEncode({ Attestation: { document: res.document } });
    case 'GetRandom':
      return cborEncode({ GetRandom: { random: res.random } });
  }
}

/** Split a serde enum value into (variant name, body): text for unit variants, or a 1-key map. */
function variant(v: unknown, what: string): [string, unknown] {
  if (typeof v === 'string') return [v, undefined];
  if (v instanceof Map && v.size === 1) {
    const [k, body] = v.entries().next().value as [unknown, unknown];
    if (typeof k === 'string') return [k, body];
  }
  throw new NsmError('InvalidResponse', `${what}: expected a text variant or a 1-entry map`);
}

function struct(body: unknown, name: string): Map<unknown, unknown> {
  if (!(body instanceof Map)) throw new NsmError('InvalidResponse', `${name}: body is not a map`);
  return body;
}

function getBytes(m: Map<unknown, unknown>, name: string, key: string): Uint8Array {
  const v = m.get(key);
  if (!(v instanceof Uint8Array)) throw new NsmError('InvalidResponse', `${name}.${key}: not a byte string`);
  return v;
}

function getOptBytes(m: Map<unknown, unknown>, name: string, key: string): Uint8Array | null {
  const v = m.get(key);
  if (v === null || v === undefined) return null;
  if (!(v instanceof Uint8Array)) throw new NsmError('InvalidResponse', `${name}.${key}: not a byte string`);
  return v;
}

function getUint(m: Map<unknown, unknown>, name: string, key: string): number {
  const v = m.get(key);
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) {
    throw new NsmError('InvalidResponse', `${name}.${key}: not an unsigned integer`);
  }
  return v;
}

function parse(bytes: Uint8Array, what: string): unknown {
  try {
    return cborDecode(bytes);
  } catch (err) {
    throw new NsmError('InvalidResponse', `${what} is not valid CBOR: ${(err as Error).message}`);
  }
}

/** Decode an NSM response. `{"Error": name}` comes back as {type:'Error', code}. */
export function decodeResponse(bytes: Uint8Array): NsmResponse {
  const [name, body] = variant(parse(bytes, 'NSM response'), 'NSM response');
  switch (name) {
    case 'LockPCR':
    case 'LockPCRs':
      return { type: name };
    case 'Error': {
      // Newtype variant: the body is the ErrorCode, itself a unit variant (text, or a 1-key map).
      const [code] = variant(body, 'Error');
      return { type: 'Error', code };
    }
    case 'DescribeNSM': {
      const m = struct(body, name);
      const locked = m.get('locked_pcrs');
      if (!Array.isArray(locked) || !locked.every((x) => Number.isInteger(x) && x >= 0)) {
        throw new NsmError('InvalidResponse', 'DescribeNSM.locked_pcrs: not a list of integers');
      }
      const digest = m.get('digest');
      const [digestName] = variant(digest, 'DescribeNSM.digest');
      if (digestName !== 'SHA256' && digestName !== 'SHA384' && digestName !== 'SHA512') {
        throw new NsmError('InvalidResponse', `DescribeNSM.digest: unknown digest ${digestName}`);
      }
      const moduleId = m.get('module_id');
      if (typeof moduleId !== 'string')
        throw new NsmError('InvalidResponse', 'DescribeNSM.module_id: not text');
      return {
        type: 'DescribeNSM',
        version_major: getUint(m, name, 'version_major'),
        version_minor: getUint(m, name, 'version_minor'),
        version_patch: getUint(m, name, 'version_patch'),
        module_id: moduleId,
        max_pcrs: getUint(m, name, 'max_pcrs'),
        locked_pcrs: locked as number[],
        digest: digestName as Digest,
      };
    }
    case 'DescribePCR': {
      const m = struct(body, name);
      const lock = m.get('lock');
      if (typeof lock !== 'boolean') throw new NsmError('InvalidResponse', 'DescribePCR.lock: not a boolean');
      return { type: name, lock, data: getBytes(m, name, 'data') };
    }
    case 'ExtendPCR':
      return { type: name, data: getBytes(struct(body, name), name, 'data') };
    case 'Attestation':
      return { type: name, document: getBytes(struct(body, name), name, 'document') };
    case 'GetRandom':
      return { type: name, random: getBytes(struct(body, name), name, 'random') };
    default:
      throw new NsmError('InvalidResponse', `unknown NSM response variant ${name}`);
  }
}

/** Decode a request (used by the software NSM; a malformed request is InvalidArgument). */
export function decodeRequest(bytes: Uint8Array): NsmRequest {
  if (bytes.length > NSM_REQUEST_MAX_SIZE) {
    throw new NsmError('InputTooLarge', `request is ${bytes.length} bytes`);
  }
  let value: unknown;
  try {
    value = cborDecode(bytes);
  } catch (err) {
    throw new NsmError('InvalidArgument', `request is not valid CBOR: ${(err as Error).message}`);
  }
  let name: string;
  let body: unknown;
  try {
    [name, body] = variant(value, 'request');
  } catch {
    throw new NsmError('InvalidArgument', 'request is not an NSM request variant');
  }
  const m = body instanceof Map ? body : new Map();
  const index = (key = 'index'): number => {
    const v = m.get(key);
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xffff) {
      throw new NsmError('InvalidArgument', `${name}.${key}: not a u16`);
    }
    return v;
  };
  const opt = (key: string): Uint8Array | null => {
    try {
      return getOptBytes(m, name, key);
    } catch {
      throw new NsmError('InvalidArgument', `${name}.${key}: not bytes or null`);
    }
  };
  switch (name) {
    case 'DescribeNSM':
    case 'GetRandom':
      return { type: name };
    case 'DescribePCR':
    case 'LockPCR':
      return { type: name, index: index() };
    case 'LockPCRs':
      return { type: name, range: index('range') };
    case 'ExtendPCR': {
      const data = m.get('data');
      if (!(data instanceof Uint8Array)) throw new NsmError('InvalidArgument', 'ExtendPCR.data: not bytes');
      return { type: name, index: index(), data };
    }
    case 'Attestation':
      return { type: name, user_data: opt('user_data'), nonce: opt('nonce'), public_key: opt('public_key') };
    default:
      throw new NsmError('InvalidArgument', `unknown NSM request ${name}`);
  }
}
