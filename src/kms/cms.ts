// KMS `CiphertextForRecipient`: CMS EnvelopedData (RFC 5652) in BER with indefinite lengths, one
// KeyTransRecipientInfo (RSAES-OAEP SHA-256 / MGF1-SHA-256), AES-256-CBC content. Shape:
// docs/reference/nitro.md, "CiphertextForRecipient". asn1js decodes the BER (with its depth/node limits, both
// encodings of encryptedContent); the few fields KMS sets are then read straight off the decoded tree.
// (pkijs's EnvelopedData/ContentInfo classes did the same checks but built their full schemas —
// OriginatorInfo, certificates, CRLs — on every call: ~2 ms per reply, more than the RSA decryption.) Node's
// crypto does the two decryptions synchronously: one RSA-2048 private operation (~0.3-1 ms) does not need a
// thread hop.
import {
  createDecipheriv,
  createHash,
  constants as cryptoConstants,
  type KeyObject,
  privateDecrypt,
} from 'node:crypto';
import * as asn1js from 'asn1js';

const OID_ENVELOPED_DATA = '1.2.840.113549.1.7.3';
const OID_DATA = '1.2.840.113549.1.7.1';
const OID_RSAES_OAEP = '1.2.840.113549.1.1.7';
const OID_MGF1 = '1.2.840.113549.1.1.8';
const OID_SHA1 = '1.3.14.3.2.26';
const OID_SHA256 = '2.16.840.1.101.3.4.2.1';
const OID_AES256_CBC = '2.16.840.1.101.3.4.1.42';

const UNIVERSAL = 1;
const CONTEXT = 3;
const TAG_INTEGER = 2;
const TAG_OCTET_STRING = 4;
const TAG_OID = 6;
const TAG_SEQUENCE = 16;
const TAG_SET = 17;

/** A CiphertextForRecipient that is malformed or does not decrypt. Messages never carry secret bytes. */
export class CmsError extends Error {
  override name = 'CmsError';
}

export interface ParsedEnvelope {
  /** rid subjectKeyIdentifier (KMS: SHA-256 of the recipient's SPKI DER), or null if rid is issuer+serial. */
  subjectKeyIdentifier: Buffer | null;
  encryptedKey: Buffer;
  iv: Buffer;
  encryptedContent: Buffer;
}

type Block = asn1js.BaseBlock;

function fail(what: string): never {
  throw new CmsError(`CiphertextForRecipient: ${what}`);
}

function is(b: Block | undefined, tagClass: number, tag: number): boolean {
  return b !== undefined && b.idBlock.tagClass === tagClass && b.idBlock.tagNumber === tag;
}

/** The elements of a constructed block (SEQUENCE, SET, [n] EXPLICIT); `what` names it in the error. */
function items(b: Block | undefined, tagClass: number, tag: number, what: string): Block[] {
  if (!is(b, tagClass, tag) || !(b instanceof asn1js.Constructed) || !b.idBlock.isConstructed) fail(what);
  return b.valueBlock.value;
}

/** An OCTET STRING's bytes (or an IMPLICIT-tagged one's): primitive, or constructed from OCTET STRINGs. */
function octets(b: Block, what: string): Buffer {
  if (!b.idBlock.isConstructed) {
    const hex = (b.valueBlock as { valueHexView?: Uint8Array }).valueHexView;
    if (!(hex instanceof Uint8Array)) fail(what);
    return Buffer.from(hex);
  }
  if (!(b instanceof asn1js.Constructed) && !(b instanceof asn1js.OctetString)) fail(what);
  const parts = (b.valueBlock as { value?: Block[] }).value ?? [];
  return Buffer.concat(
    parts.map((p) => {
      if (!is(p, UNIVERSAL, TAG_OCTET_STRING)) fail(what);
      return octets(p, what);
    }),
  );
}

function oid(b: Block | undefined, what: string): string {
  if (!is(b, UNIVERSAL, TAG_OID) || !(b instanceof asn1js.ObjectIdentifier)) fail(what);
  return b.getValue();
}

function smallInt(b: Block | undefined, what: string): number {
  if (!is(b, UNIVERSAL, TAG_INTEGER) || !(b instanceof asn1js.Integer) || b.idBlock.isConstructed) fail(what);
  const v = b.valueBlock.valueHexView;
  if (v.length === 0 || v.length > 4) fail(what);
  return b.valueBlock.valueDec;
}

/** AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL } */
function algorithm(b: Block | undefined, what: string): { id: string; params: Block | undefined } {
  const [id, params, ...extra] = items(b, UNIVERSAL, TAG_SEQUENCE, what);
  if (extra.length > 0) fail(what);
  return { id: oid(id, what), params };
}

/**
 * RSAES-OAEP-params (RFC 8017): [0] hashAlgorithm, [1] maskGenAlgorithm, [2] pSourceAlgorithm, each
 * EXPLICIT and OPTIONAL (defaults SHA-1, MGF1-SHA-1, empty label). Returns the two hash OIDs.
 */
function oaepHashes(params: Block | undefined): { hash: string; mgf: string; mgfHash: string } {
  const out = { hash: OID_SHA1, mgf: OID_MGF1, mgfHash: OID_SHA1 };
  let last = -1;
  for (const f of items(params, UNIVERSAL, TAG_SEQUENCE, 'bad RSAES-OAEP parameters')) {
    const n = f.idBlock.tagNumber;
    if (f.idBlock.tagClass !== CONTEXT || n > 2 || n <= last) fail('bad RSAES-OAEP parameters');
    last = n;
    const inner = items(f, CONTEXT, n, 'bad RSAES-OAEP parameters');
    if (inner.length !== 1) fail('bad RSAES-OAEP parameters');
    const alg = algorithm(inner[0], 'bad RSAES-OAEP parameters');
    if (n === 0) out.hash = alg.id;
    else if (n === 1) {
      out.mgf = alg.id;
      out.mgfHash = alg.id === OID_MGF1 ? algorithm(alg.params, 'bad MGF1 parameters').id : '';
    }
  }
  return out;
}

/** IssuerAndSerialNumber ::= SEQUENCE { issuer Name (SEQUENCE OF SET OF {type OID, value ANY}), serial INTEGER } */
function isIssuerAndSerial(b: Block): boolean {
  try {
    const [name, serial, ...extra] = items(b, UNIVERSAL, TAG_SEQUENCE, 'rid');
    if (extra.length > 0 || !is(serial, UNIVERSAL, TAG_INTEGER) || serial!.idBlock.isConstructed)
      return false;
    for (const rdn of items(name, UNIVERSAL, TAG_SEQUENCE, 'rid')) {
      for (const atv of items(rdn, UNIVERSAL, TAG_SET, 'rid')) {
        const [type, value, ...more] = items(atv, UNIVERSAL, TAG_SEQUENCE, 'rid');
        oid(type, 'rid');
        if (value === undefined || more.length > 0) return false;
      }
    }
    return true;
  } catch {
    return false;
  }
}

/** Parses and checks the structure (every field KMS sets), without decrypting. */
export function parseEnvelope(ber: Uint8Array): ParsedEnvelope {
  const view = new Uint8Array(ber.buffer, ber.byteOffset, ber.byteLength);
  let asn1: ReturnType<typeof asn1js.fromBER>;
  try {
    // Not parseEmbedded: asn1js would otherwise try every OCTET STRING (the RSA-encrypted key, the
    // ciphertext) as nested BER, wasted work on bytes that are random by design.
    asn1 = asn1js.fromBER(view, { parseEmbedded: false });
  } catch (err) {
    // asn1js throws (instead of reporting offset -1) on some malformed values, e.g. a GeneralizedTime.
    fail(`not BER (${err instanceof Error ? err.message : String(err)})`);
  }
  if (asn1.offset === -1) fail(`not BER (${asn1.result.error || 'parse error'})`);
  if (asn1.offset !== view.byteLength) fail('trailing bytes after the ContentInfo');

  // ContentInfo ::= SEQUENCE { contentType OID, content [0] EXPLICIT ANY }
  const ci = items(asn1.result, UNIVERSAL, TAG_SEQUENCE, 'not a CMS ContentInfo');
  if (ci.length !== 2) fail('not a CMS ContentInfo');
  const contentType = oid(ci[0], 'not a CMS ContentInfo');
  if (contentType !== OID_ENVELOPED_DATA) fail(`content type ${contentType}, expected envelopedData`);
  const content = items(ci[1], CONTEXT, 0, 'not a CMS ContentInfo');
  if (content.length !== 1) fail('not a CMS ContentInfo');

  // EnvelopedData ::= SEQUENCE { version, originatorInfo [0] IMPLICIT OPTIONAL, recipientInfos SET,
  //                              encryptedContentInfo, unprotectedAttrs [1] IMPLICIT OPTIONAL }
  const ed = items(content[0], UNIVERSAL, TAG_SEQUENCE, 'not a CMS EnvelopedData');
  let i = 0;
  const version = smallInt(ed[i++], 'not a CMS EnvelopedData (version)');
  if (version !== 2) fail(`EnvelopedData version ${version}, expected 2`);
  if (is(ed[i], CONTEXT, 0)) i++; // originatorInfo: KMS sends none; nothing in it is needed
  const recipients = items(ed[i++], UNIVERSAL, TAG_SET, 'not a CMS EnvelopedData (recipientInfos)');
  const eciBlock = ed[i++];
  if (is(ed[i], CONTEXT, 1)) i++; // unprotectedAttrs
  if (i !== ed.length) fail('not a CMS EnvelopedData (unexpected fields)');
  if (recipients.length !== 1) fail(`${recipients.length} recipients, expected 1`);

  // KeyTransRecipientInfo ::= SEQUENCE { version, rid, keyEncryptionAlgorithm, encryptedKey OCTET STRING }
  // (the other RecipientInfo kinds are [1]..[4]-tagged, so a bare SEQUENCE is KeyTrans).
  if (!is(recipients[0], UNIVERSAL, TAG_SEQUENCE)) fail('recipient is not KeyTrans');
  const ktri = items(recipients[0], UNIVERSAL, TAG_SEQUENCE, 'recipient is not KeyTrans');
  if (ktri.length !== 4) fail('malformed KeyTransRecipientInfo');
  const ktriVersion = smallInt(ktri[0], 'malformed KeyTransRecipientInfo (version)');
  if (ktriVersion !== 2 && ktriVersion !== 0) fail(`KeyTransRecipientInfo version ${ktriVersion}`);
  // rid: issuerAndSerialNumber (SEQUENCE) or subjectKeyIdentifier ([0] IMPLICIT OCTET STRING).
  const rid = ktri[1]!;
  let subjectKeyIdentifier: Buffer | null;
  if (is(rid, CONTEXT, 0)) subjectKeyIdentifier = octets(rid, 'malformed recipient identifier');
  else if (isIssuerAndSerial(rid)) subjectKeyIdentifier = null;
  else fail('malformed recipient identifier');
  const kea = algorithm(ktri[2], 'malformed key encryption algorithm');
  if (kea.id !== OID_RSAES_OAEP) fail(`key encryption ${kea.id}, expected RSAES-OAEP`);
  const oaep = oaepHashes(kea.params);
  if (oaep.hash !== OID_SHA256) fail('OAEP hash is not SHA-256');
  if (oaep.mgf !== OID_MGF1) fail('OAEP mask generation is not MGF1');
  if (oaep.mgfHash !== OID_SHA256) fail('MGF1 hash is not SHA-256');
  if (!is(ktri[3], UNIVERSAL, TAG_OCTET_STRING)) fail('malformed encryptedKey');
  const encryptedKey = octets(ktri[3]!, 'malformed encryptedKey');

  // EncryptedContentInfo ::= SEQUENCE { contentType, contentEncryptionAlgorithm,
  //                                     encryptedContent [0] IMPLICIT OCTET STRING OPTIONAL }
  const eci = items(eciBlock, UNIVERSAL, TAG_SEQUENCE, 'malformed EncryptedContentInfo');
  if (eci.length < 2 || eci.length > 3) fail('malformed EncryptedContentInfo');
  const eciType = oid(eci[0], 'malformed EncryptedContentInfo');
  if (eciType !== OID_DATA) fail(`encrypted content type ${eciType}, expected data`);
  const cea = algorithm(eci[1], 'malformed content encryption algorithm');
  if (cea.id !== OID_AES256_CBC) fail(`content encryption ${cea.id}, expected AES-256-CBC`);
  if (!is(cea.params, UNIVERSAL, TAG_OCTET_STRING)) fail('AES-256-CBC IV missing');
  const iv = octets(cea.params!, 'AES-256-CBC IV missing');
  if (iv.length !== 16) fail(`IV of ${iv.length} bytes, expected 16`);
  if (!is(eci[2], CONTEXT, 0)) fail('encryptedContent missing');
  // Primitive, or constructed from OCTET STRING chunks (KMS sends the latter).
  const encryptedContent = octets(eci[2]!, 'malformed encryptedContent');
  if (encryptedContent.length === 0 || encryptedContent.length % 16 !== 0) fail('encryptedContent length');
  return { subjectKeyIdentifier, encryptedKey, iv, encryptedContent };
}

/** SHA-256 of a SubjectPublicKeyInfo DER: the rid KMS writes. */
export function spkiKeyId(spkiDer: Uint8Array): Buffer {
  return createHash('sha256').update(spkiDer).digest();
}

/**
 * Decrypts a CiphertextForRecipient with the recipient's RSA private key. Every cryptographic failure
 * (OAEP, key length, padding) gives the same message, so a caller cannot be used as a padding oracle.
 */
export function decryptEnvelope(ber: Uint8Array, privateKey: KeyObject, expectKeyId?: Uint8Array): Buffer {
  const env = parseEnvelope(ber);
  if (expectKeyId && env.subjectKeyIdentifier && !env.subjectKeyIdentifier.equals(expectKeyId)) {
    fail('addressed to another key (rid does not match our public key)');
  }
  try {
    const cek = privateDecrypt(
      { key: privateKey, padding: cryptoConstants.RSA_PKCS1_OAEP_PADDING, oaepHash: 'sha256' },
      env.encryptedKey,
    );
    if (cek.length !== 32) throw new Error('cek length');
    const decipher = createDecipheriv('aes-256-cbc', cek, env.iv);
    return Buffer.concat([decipher.update(env.encryptedContent), decipher.final()]);
  } catch {
    fail('decryption failed');
  }
}
