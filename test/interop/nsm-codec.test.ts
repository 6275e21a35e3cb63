// cloister's NSM codec (src/nsm/codec.ts) against AWS's aws-nitro-enclaves-nsm-api crate: the request
// bytes cloister sends to /dev/nsm equal the crate's serde_cbor encoding of the same Request, for every
// request type; cloister decodes the crate's encoded Responses; and the software NSM's replies are the
// crate's bytes too. Values go to the Rust program as the serde JSON of the crate's own enums.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  decodeResponse,
  encodeRequest,
  encodeResponse,
  NSM_ERROR_CODES,
  type NsmRequest,
  type NsmResponse,
} from '../../src/nsm/codec.ts';
import { runRust, rustProgram } from './toolchains.ts';

const bytes = (n: number, fill: number) => new Uint8Array(n).fill(fill);

const REQUESTS: NsmRequest[] = [
  { type: 'DescribeNSM' },
  { type: 'GetRandom' },
  // Integer widths: inline (<24), one byte, two bytes, u16 max.
  { type: 'DescribePCR', index: 0 },
  { type: 'DescribePCR', index: 23 },
  { type: 'DescribePCR', index: 24 },
  { type: 'DescribePCR', index: 256 },
  { type: 'DescribePCR', index: 65535 },
  { type: 'ExtendPCR', index: 16, data: bytes(48, 0xab) },
  { type: 'ExtendPCR', index: 31, data: bytes(0, 0) },
  { type: 'ExtendPCR', index: 20, data: bytes(300, 1) },
  { type: 'LockPCR', index: 16 },
  { type: 'LockPCRs', range: 16 },
  { type: 'LockPCRs', range: 0 },
  { type: 'Attestation', user_data: null, nonce: null, public_key: null },
  { type: 'Attestation', user_data: bytes(5, 2), nonce: null, public_key: null },
  { type: 'Attestation', user_data: null, nonce: bytes(32, 3), public_key: bytes(91, 4) },
  // The largest request: three 1024-byte fields (two-byte lengths).
  { type: 'Attestation', user_data: bytes(1024, 5), nonce: bytes(1024, 6), public_key: bytes(1024, 7) },
];

const RESPONSES: NsmResponse[] = [
  {
    type: 'DescribeNSM',
    version_major: 1,
    version_minor: 0,
    version_patch: 0,
    module_id: 'i-0123456789abcdef0-enc0123456789abcdef',
    max_pcrs: 32,
    locked_pcrs: [0, 1, 2, 3, 4, 15],
    digest: 'SHA384',
  },
  {
    type: 'DescribeNSM',
    version_major: 2,
    version_minor: 300,
    version_patch: 65535,
    module_id: '',
    max_pcrs: 0,
    locked_pcrs: [],
    digest: 'SHA512',
  },
  { type: 'DescribePCR', lock: true, data: bytes(48, 0x11) },
  { type: 'DescribePCR', lock: false, data: bytes(48, 0) },
  { type: 'ExtendPCR', data: bytes(48, 0x22) },
  { type: 'LockPCR' },
  { type: 'LockPCRs' },
  { type: 'Attestation', document: bytes(4500, 0x33) },
  { type: 'GetRandom', random: bytes(256, 0x44) },
  ...NSM_ERROR_CODES.map((code) => ({ type: 'Error' as const, code })),
];

/** serde's externally tagged JSON for the crate's enums: unit variants by name, bytes as number arrays. */
function serdeJson(value: NsmRequest | NsmResponse): unknown {
  const { type, ...fields } = value as { type: string } & Record<string, unknown>;
  if (type === 'Error') return { Error: (value as { code: string }).code };
  if (Object.keys(fields).length === 0) return type;
  const body: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(fields)) body[k] = v instanceof Uint8Array ? Array.from(v) : v;
  return { [type]: body };
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

test('every request: the bytes cloister sends equal aws-nitro-enclaves-nsm-api serde_cbor', () => {
  const theirs = runRust(rustProgram(), 'nsm-requests', REQUESTS.map(serdeJson)) as string[];
  assert.deepEqual(new Set(REQUESTS.map((r) => r.type)).size, 7, 'all seven request types');
  for (const [i, req] of REQUESTS.entries()) {
    assert.equal(hex(encodeRequest(req)), theirs[i], `${req.type} #${i}`);
  }
  // Known anchor (Linux drivers/misc/nsm.c sends this for GetRandom): the comparison is not vacuous.
  assert.equal(theirs[1], '6947657452616e646f6d');
});

test("every response: cloister decodes the crate's bytes, and the software NSM encodes the same bytes", () => {
  const theirs = runRust(rustProgram(), 'nsm-responses', RESPONSES.map(serdeJson)) as string[];
  assert.equal(new Set(RESPONSES.map((r) => r.type)).size, 8, 'all eight response types');
  for (const [i, res] of RESPONSES.entries()) {
    const decoded = decodeResponse(Buffer.from(theirs[i]!, 'hex'));
    const norm = (r: NsmResponse) =>
      Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v instanceof Uint8Array ? hex(v) : v]));
    assert.deepEqual(norm(decoded), norm(res), `${res.type} #${i}`);
    assert.equal(hex(encodeResponse(res)), theirs[i], `software NSM encoding of ${res.type} #${i}`);
  }
});
