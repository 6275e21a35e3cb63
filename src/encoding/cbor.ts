// CBOR as the NSM and attestation documents use it (serde_cbor 0.11): one encoder and one decoder for
// the NSM protocol (src/nsm/codec.ts) and for COSE_Sign1 documents (src/attestation/). A folder of its
// own so that neither of those imports the other for it.
import { Decoder, Encoder } from 'cbor-x';

// Plain objects keep insertion order, which is the field order serde emits; Uint8Array must stay a
// plain byte string (no typed-array tag); Maps (never sent here) would otherwise get tag 259.
const encoder = new Encoder({
  useRecords: false,
  mapsAsObjects: true,
  variableMapSize: true,
  tagUint8Array: false,
  // Not in cbor-x's typings, but honoured: without it a Map is wrapped in tag 259.
  ...{ useTag259ForMaps: false },
});
// Maps come back as Map so non-text keys survive; records/extensions are never expected.
const decoder = new Decoder({ useRecords: false, mapsAsObjects: false });

/** CBOR-encode a value the way serde_cbor does for the NSM types (and attestation payloads). */
export function cborEncode(value: unknown): Buffer {
  return encoder.encode(value);
}

/** Decode one CBOR item that must fill the whole buffer. */
export function cborDecode(bytes: Uint8Array): unknown {
  return decoder.decode(bytes);
}
