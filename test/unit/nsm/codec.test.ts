// The NSM CBOR codec against the derived encodings in test/vectors/nsm_cbor_examples.txt,
// byte for byte, and the client over a raw transport that answers with those bytes.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { createNsmClient } from '../../../src/nsm/client.ts';
import {
  decodeRequest,
  decodeResponse,
  encodeRequest,
  encodeResponse,
  type NsmRequest,
} from '../../../src/nsm/codec.ts';
import { NsmError } from '../../../src/nsm/types.ts';

const EXAMPLES = readFileSync(new URL('../../vectors/nsm_cbor_examples.txt', import.meta.url), 'utf8');

/** The first hex token (>= 6 hex digits, no spaces) after `label` in the examples file. */
function example(label: string): string {
  const at = EXAMPLES.indexOf(label);
  assert.ok(at >= 0, `label ${label} not in the examples file`);
  const m = /(?:^|\s)([0-9a-f]{6,})(?=\s|$)/m.exec(EXAMPLES.slice(at + label.length));
  assert.ok(m?.[1], `no hex after ${label}`);
  return m[1];
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

const REQUESTS: Array<[string, NsmRequest]> = [
  ['GetRandom (request)', { type: 'GetRandom' }],
  ['DescribeNSM (request)', { type: 'DescribeNSM' }],
  ['DescribePCR{index:0}', { type: 'DescribePCR', index: 0 }],
  ["ExtendPCR{index:16,data:h'010203'}", { type: 'ExtendPCR', index: 16, data: Buffer.from([1, 2, 3]) }],
  ['LockPCR{index:16}', { type: 'LockPCR', index: 16 }],
  ['LockPCRs{range:32}', { type: 'LockPCRs', range: 32 }],
  [
    'Attestation{user_data:null,nonce:null,public_key:null}',
    { type: 'Attestation', user_data: null, nonce: null, public_key: null },
  ],
  [
    "Attestation{nonce:h'aaaaaaaa'}",
    { type: 'Attestation', user_data: null, nonce: Buffer.from('aaaaaaaa', 'hex'), public_key: null },
  ],
];

test('every request example encodes byte for byte and decodes back', () => {
  for (const [label, req] of REQUESTS) {
    const want = example(label);
    assert.equal(hex(encodeRequest(req)), want, label);
    assert.deepEqual(decodeRequest(Buffer.from(want, 'hex')), req, label);
  }
});

test('response examples decode, and the software side encodes them identically', () => {
  const lock = example('Response LockPCR (unit variant)');
  assert.deepEqual(decodeResponse(Buffer.from(lock, 'hex')), { type: 'LockPCR' });
  assert.equal(hex(encodeResponse({ type: 'LockPCR' })), lock);

  const err = example('Response Error(InvalidArgument)');
  assert.deepEqual(decodeResponse(Buffer.from(err, 'hex')), { type: 'Error', code: 'InvalidArgument' });
  assert.equal(hex(encodeResponse({ type: 'Error', code: 'InvalidArgument' })), err);

  const pcr = example("Response DescribePCR{lock:true,data:h'0000'}");
  const decoded = decodeResponse(Buffer.from(pcr, 'hex'));
  assert.equal(decoded.type, 'DescribePCR');
  assert.deepEqual(decoded, { type: 'DescribePCR', lock: true, data: Buffer.alloc(2) });
  assert.equal(hex(encodeResponse({ type: 'DescribePCR', lock: true, data: Buffer.alloc(2) })), pcr);

  // GetRandom prefix as in Linux nsm.c, then a 256-byte bstr (59 0100).
  const prefix = 'a169 47657452616e646f6d a166 72616e646f6d'.replace(/ /g, '');
  assert.ok(EXAMPLES.includes('a169 47657452616e646f6d a166 72616e646f6d'));
  const random = Buffer.alloc(256, 7);
  const enc = encodeResponse({ type: 'GetRandom', random });
  assert.equal(hex(enc), `${prefix}590100${random.toString('hex')}`);
  assert.deepEqual(decodeResponse(enc), { type: 'GetRandom', random });

  // Attestation response: a16b "Attestation" a168 "document" 59xxxx <doc>.
  const doc = Buffer.alloc(0x1234, 0x84);
  const att = encodeResponse({ type: 'Attestation', document: doc });
  assert.equal(hex(att.subarray(0, 26)), 'a16b4174746573746174696f6ea168646f63756d656e74591234');
  assert.deepEqual(decodeResponse(att), { type: 'Attestation', document: doc });
});

test('a maximum Attestation request is 3122 bytes; 1025-byte fields are refused before sending', async () => {
  const k = Buffer.alloc(1024, 1);
  assert.equal(encodeRequest({ type: 'Attestation', user_data: k, nonce: k, public_key: k }).length, 3122);
  assert.match(EXAMPLES, /3122 bytes/);
  let calls = 0;
  const nsm = createNsmClient(async () => {
    calls++;
    return encodeResponse({ type: 'Attestation', document: Buffer.from([0x84]) });
  });
  for (const field of ['user_data', 'nonce', 'public_key'] as const) {
    await assert.rejects(nsm.attestation({ [field]: Buffer.alloc(1025) }), (e: unknown) => {
      assert.ok(e instanceof NsmError);
      assert.equal(e.code, 'InputTooLarge');
      assert.match(e.message, new RegExp(field));
      return true;
    });
  }
  assert.equal(calls, 0, 'nothing reached the device');
  assert.deepEqual(await nsm.attestation({ nonce: k }), Buffer.from([0x84]));
  assert.equal(calls, 1);
});

test('unit variants are accepted as text or as a 1-key map', () => {
  // {"LockPCRs": null} and {"Error": {"InvalidIndex": null}} (map forms of unit variants).
  assert.deepEqual(decodeResponse(Buffer.from('a1684c6f636b50435273f6', 'hex')), { type: 'LockPCRs' });
  assert.deepEqual(decodeResponse(Buffer.from('a1654572726f72a16c496e76616c6964496e646578f6', 'hex')), {
    type: 'Error',
    code: 'InvalidIndex',
  });
});

test('the client turns {"Error": name} into NsmError with that code, and rejects wrong answers', async () => {
  const replies: Buffer[] = [];
  const sent: string[] = [];
  const nsm = createNsmClient(async (req) => {
    sent.push(hex(req));
    const r = replies.shift();
    assert.ok(r, 'unexpected request');
    return r;
  });
  replies.push(encodeResponse({ type: 'Error', code: 'InvalidIndex' }));
  await assert.rejects(nsm.describePcr(40), { name: 'NsmError', code: 'InvalidIndex' });
  assert.equal(sent[0], 'a16b4465736372696265504352a165696e6465781828');

  replies.push(Buffer.from(example('Response LockPCR (unit variant)'), 'hex'));
  await assert.rejects(nsm.getRandom(), { code: 'InvalidResponse' }); // LockPCR is no answer to GetRandom

  replies.push(Buffer.from('ff', 'hex'));
  await assert.rejects(nsm.describeNsm(), { code: 'InvalidResponse' });

  replies.push(Buffer.from(example('Response LockPCR (unit variant)'), 'hex'));
  await nsm.lockPcr(16);
  assert.equal(sent.at(-1), example('LockPCR{index:16}'));

  replies.push(
    encodeResponse({
      type: 'DescribeNSM',
      version_major: 1,
      version_minor: 2,
      version_patch: 3,
      module_id: 'i-0-enc1',
      max_pcrs: 32,
      locked_pcrs: [0, 1],
      digest: 'SHA384',
    }),
  );
  assert.deepEqual(await nsm.describeNsm(), {
    version_major: 1,
    version_minor: 2,
    version_patch: 3,
    module_id: 'i-0-enc1',
    max_pcrs: 32,
    locked_pcrs: [0, 1],
    digest: 'SHA384',
  });
  assert.equal(sent.at(-1), example('DescribeNSM (request)'));

  await assert.rejects(nsm.describePcr(70000), { code: 'InvalidArgument' });
  await nsm.close();
  await assert.rejects(nsm.getRandom(), { code: 'Closed' });
});
