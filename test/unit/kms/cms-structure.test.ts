// The proxy reads CiphertextForRecipient straight off asn1js's decoded tree (no pkijs schemas). These tests
// pin that reader: envelopes built field by field (each CMS variant the reader must take or refuse), and a
// differential check against pkijs's EnvelopedData on every real vector and thousands of corrupted copies:
// whatever the reader accepts, pkijs must accept too, with the same fields.
import assert from 'node:assert/strict';
import { constants, createCipheriv, generateKeyPairSync, publicEncrypt, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import {
  CmsError,
  decryptEnvelope,
  type ParsedEnvelope,
  parseEnvelope,
  spkiKeyId,
} from '../../../src/kms/cms.ts';
import { buildEnvelope } from '../../../src/kms-emulator/recipient.ts';

const V = join(import.meta.dirname, '../../vectors');
const OID = {
  envelopedData: '1.2.840.113549.1.7.3',
  data: '1.2.840.113549.1.7.1',
  oaep: '1.2.840.113549.1.1.7',
  mgf1: '1.2.840.113549.1.1.8',
  sha1: '1.3.14.3.2.26',
  sha256: '2.16.840.1.101.3.4.2.1',
  aes256cbc: '2.16.840.1.101.3.4.1.42',
};

const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const spki = publicKey.export({ type: 'spki', format: 'der' });
const secret = Buffer.from('thirty-two bytes of data key....');

const seq = (...value: asn1js.BaseBlock[]) => new asn1js.Sequence({ value });
const oid = (value: string) => new asn1js.ObjectIdentifier({ value });
const int = (value: number) => new asn1js.Integer({ value });
const octets = (b: Uint8Array) => new asn1js.OctetString({ valueHex: b });
const explicit = (tagNumber: number, ...value: asn1js.BaseBlock[]) =>
  new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber }, value });
const implicitPrimitive = (tagNumber: number, b: Uint8Array) =>
  new asn1js.Primitive({ idBlock: { tagClass: 3, tagNumber }, valueHex: b });
const alg = (id: string, params?: asn1js.BaseBlock) => (params ? seq(oid(id), params) : seq(oid(id)));

interface Variant {
  version?: number;
  rid?: 'ski' | 'issuerSerial';
  oaepParams?: asn1js.BaseBlock;
  recipients?: number;
  primitiveContent?: boolean;
  originatorInfo?: boolean;
  extraField?: boolean;
  recipientTag?: number;
}

/** A CMS EnvelopedData with one RSA-OAEP recipient, encrypting `secret` for our key, shaped by `v`. */
function build(v: Variant = {}): Buffer {
  const cek = randomBytes(32);
  const iv = randomBytes(16);
  const c = createCipheriv('aes-256-cbc', cek, iv);
  const content = Buffer.concat([c.update(secret), c.final()]);
  const encryptedKey = publicEncrypt(
    { key: publicKey, padding: constants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
    cek,
  );
  const oaepParams =
    v.oaepParams ?? seq(explicit(0, alg(OID.sha256)), explicit(1, alg(OID.mgf1, alg(OID.sha256))));
  const rid =
    v.rid === 'issuerSerial'
      ? seq(
          seq(new asn1js.Set({ value: [seq(oid('2.5.4.3'), new asn1js.Utf8String({ value: 'kms' }))] })),
          int(1),
        )
      : implicitPrimitive(0, spkiKeyId(spki));
  const ktriFields = [
    int(v.rid === 'issuerSerial' ? 0 : 2),
    rid,
    alg(OID.oaep, oaepParams),
    octets(encryptedKey),
  ];
  const ktri =
    v.recipientTag === undefined
      ? seq(...ktriFields)
      : new asn1js.Constructed({ idBlock: { tagClass: 3, tagNumber: v.recipientTag }, value: ktriFields });
  const recipients = new asn1js.Set({ value: Array.from({ length: v.recipients ?? 1 }, () => ktri) });
  const encrypted = v.primitiveContent
    ? implicitPrimitive(0, content)
    : explicit(0, octets(content.subarray(0, 16)), octets(content.subarray(16)));
  const eci = seq(oid(OID.data), alg(OID.aes256cbc, octets(iv)), encrypted);
  const fields: asn1js.BaseBlock[] = [int(v.version ?? 2)];
  if (v.originatorInfo) fields.push(explicit(0, explicit(0)));
  fields.push(recipients, eci);
  if (v.extraField) fields.push(int(7));
  const ci = seq(oid(OID.envelopedData), explicit(0, seq(...fields)));
  return Buffer.from(ci.toBER());
}

function refused(ber: Buffer, message: RegExp): void {
  assert.throws(
    () => decryptEnvelope(ber, privateKey, spkiKeyId(spki)),
    (err: Error) => err instanceof CmsError && message.test(err.message),
  );
}

test('envelopes built field by field: the shapes KMS and CMS allow decrypt', () => {
  const key = spkiKeyId(spki);
  assert.deepEqual(decryptEnvelope(build(), privateKey, key), secret);
  assert.deepEqual(decryptEnvelope(build({ primitiveContent: true }), privateKey, key), secret);
  assert.deepEqual(decryptEnvelope(build({ originatorInfo: true }), privateKey, key), secret);
  const bySerial = build({ rid: 'issuerSerial' });
  assert.equal(parseEnvelope(bySerial).subjectKeyIdentifier, null);
  assert.deepEqual(decryptEnvelope(bySerial, privateKey, key), secret);
  // What the emulator sends (KMS's BER with indefinite lengths) reads the same.
  assert.deepEqual(decryptEnvelope(buildEnvelope(secret, spki), privateKey, key), secret);
});

test('envelopes built field by field: each departure from KMS shape is a CmsError naming it', () => {
  refused(build({ version: 0 }), /EnvelopedData version 0, expected 2/);
  refused(build({ recipients: 2 }), /2 recipients, expected 1/);
  refused(build({ recipientTag: 1 }), /recipient is not KeyTrans/);
  refused(build({ extraField: true }), /unexpected fields/);
  // Absent OAEP parameters mean SHA-1 and MGF1-SHA-1 (RFC 8017 defaults): refused, not guessed.
  refused(build({ oaepParams: seq() }), /OAEP hash is not SHA-256/);
  refused(
    build({ oaepParams: seq(explicit(0, alg(OID.sha256)), explicit(1, alg(OID.mgf1, alg(OID.sha1)))) }),
    /MGF1 hash is not SHA-256/,
  );
  refused(
    build({ oaepParams: seq(explicit(1, alg(OID.mgf1, alg(OID.sha256))), explicit(0, alg(OID.sha256))) }),
    /bad RSAES-OAEP parameters/,
  );
  refused(build({ oaepParams: int(1) }), /bad RSAES-OAEP parameters/);
});

/** The former parser (pkijs's ContentInfo/EnvelopedData), as the reference. */
function pkijsParse(ber: Uint8Array): ParsedEnvelope | null {
  try {
    const asn1 = asn1js.fromBER(new Uint8Array(ber));
    if (asn1.offset === -1 || asn1.offset !== ber.byteLength) return null;
    const ci = new pkijs.ContentInfo({ schema: asn1.result });
    if (ci.contentType !== OID.envelopedData) return null;
    const ed = new pkijs.EnvelopedData({ schema: ci.content });
    if (ed.version !== 2 || ed.recipientInfos.length !== 1) return null;
    const ri = ed.recipientInfos[0]!;
    if (ri.variant !== 1 || !(ri.value instanceof pkijs.KeyTransRecipientInfo)) return null;
    const kt = ri.value;
    if (kt.keyEncryptionAlgorithm.algorithmId !== OID.oaep) return null;
    const params = new pkijs.RSAESOAEPParams({ schema: kt.keyEncryptionAlgorithm.algorithmParams });
    if (params.hashAlgorithm.algorithmId !== OID.sha256) return null;
    if (params.maskGenAlgorithm.algorithmId !== OID.mgf1) return null;
    const mgfHash = new pkijs.AlgorithmIdentifier({ schema: params.maskGenAlgorithm.algorithmParams });
    if (mgfHash.algorithmId !== OID.sha256) return null;
    const eci = ed.encryptedContentInfo;
    if (eci.contentType !== OID.data || eci.contentEncryptionAlgorithm.algorithmId !== OID.aes256cbc)
      return null;
    const ivBlock = eci.contentEncryptionAlgorithm.algorithmParams;
    if (!(ivBlock instanceof asn1js.OctetString) || !eci.encryptedContent) return null;
    return {
      subjectKeyIdentifier: kt.rid instanceof asn1js.OctetString ? Buffer.from(kt.rid.getValue()) : null,
      encryptedKey: Buffer.from(kt.encryptedKey.getValue()),
      iv: Buffer.from(ivBlock.getValue()),
      encryptedContent: Buffer.from(eci.getEncryptedContent()),
    };
  } catch {
    return null;
  }
}

test('differential: whatever the reader accepts, pkijs accepts with the same fields', () => {
  const samples: Buffer[] = [
    'enclaver_ciphertext_for_recipient.ber',
    'ned_readme_ciphertext_for_recipient.ber',
    'sdkc_cms_test_input_ber.ber',
    'sdkc_cms_test_input_ber_w_ctx.ber',
  ].map((f) => readFileSync(join(V, f)));
  samples.push(
    buildEnvelope(secret, spki),
    build({ primitiveContent: true }),
    build({ rid: 'issuerSerial' }),
  );
  let accepted = 0;
  let checked = 0;
  for (const good of samples) {
    assert.deepEqual(parseEnvelope(good), pkijsParse(good));
    const variants: Buffer[] = [];
    // One flip per byte (all bits, the lowest or the highest by turns), and truncations.
    for (let i = 0; i < good.length; i++) {
      const b = Buffer.from(good);
      b[i] = b[i]! ^ [0xff, 0x01, 0x80][i % 3]!;
      variants.push(b);
    }
    for (let n = 1; n < good.length; n += 5) variants.push(good.subarray(0, n));
    for (const b of variants) {
      checked++;
      let mine: ParsedEnvelope;
      try {
        mine = parseEnvelope(b);
      } catch (err) {
        assert.ok(err instanceof CmsError, `unexpected ${(err as Error).name}: ${(err as Error).message}`);
        continue;
      }
      accepted++;
      assert.deepEqual(mine, pkijsParse(b), `accepted input pkijs reads differently: ${b.toString('hex')}`);
    }
  }
  // Flips inside the encrypted key, IV, rid and ciphertext still parse: the comparison did real work.
  assert.ok(accepted > checked / 4, `only ${accepted} of ${checked} variants parsed`);
});
