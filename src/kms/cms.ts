// KMS `CiphertextForRecipient`: CMS EnvelopedData (RFC 5652) in BER with indefinite lengths, one
// KeyTransRecipientInfo (RSAES-OAEP SHA-256 / MGF1-SHA-256), AES-256-CBC content. Shape: nitro.md §7.4.
// asn1js/pkijs parse the BER (both encodings of encryptedContent); Node's crypto does the two
// decryptions synchronously: one RSA-2048 private operation (~1 ms) does not need a thread hop.
import {
  createDecipheriv,
  createHash,
  constants as cryptoConstants,
  type KeyObject,
  privateDecrypt,
} from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

const OID_ENVELOPED_DATA = '1.2.840.113549.1.7.3';
const OID_DATA = '1.2.840.113549.1.7.1';
const OID_RSAES_OAEP = '1.2.840.113549.1.1.7';
const OID_MGF1 = '1.2.840.113549.1.1.8';
const OID_SHA256 = '2.16.840.1.101.3.4.2.1';
const OID_AES256_CBC = '2.16.840.1.101.3.4.1.42';

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

function fail(what: string): never {
  throw new CmsError(`CiphertextForRecipient: ${what}`);
}

function hashOid(alg: pkijs.AlgorithmIdentifier | undefined): string | undefined {
  return alg?.algorithmId;
}

/** Parses and checks the structure (every field KMS sets), without decrypting. */
export function parseEnvelope(ber: Uint8Array): ParsedEnvelope {
  const view = new Uint8Array(ber);
  let asn1: ReturnType<typeof asn1js.fromBER>;
  try {
    asn1 = asn1js.fromBER(view);
  } catch (err) {
    // asn1js throws (instead of reporting offset -1) on some malformed values, e.g. a GeneralizedTime.
    fail(`not BER (${err instanceof Error ? err.message : String(err)})`);
  }
  if (asn1.offset === -1) fail(`not BER (${asn1.result.error || 'parse error'})`);
  if (asn1.offset !== view.byteLength) fail('trailing bytes after the ContentInfo');
  let enveloped: pkijs.EnvelopedData;
  try {
    const ci = new pkijs.ContentInfo({ schema: asn1.result });
    if (ci.contentType !== OID_ENVELOPED_DATA) fail(`content type ${ci.contentType}, expected envelopedData`);
    enveloped = new pkijs.EnvelopedData({ schema: ci.content });
  } catch (err) {
    if (err instanceof CmsError) throw err;
    fail(`not a CMS EnvelopedData (${err instanceof Error ? err.message : String(err)})`);
  }
  if (enveloped.version !== 2) fail(`EnvelopedData version ${enveloped.version}, expected 2`);
  if (enveloped.recipientInfos.length !== 1)
    fail(`${enveloped.recipientInfos.length} recipients, expected 1`);
  const ri = enveloped.recipientInfos[0]!;
  if (ri.variant !== 1 || !(ri.value instanceof pkijs.KeyTransRecipientInfo))
    fail('recipient is not KeyTrans');
  const ktri = ri.value;
  if (ktri.version !== 2 && ktri.version !== 0) fail(`KeyTransRecipientInfo version ${ktri.version}`);
  const kea = ktri.keyEncryptionAlgorithm;
  if (kea.algorithmId !== OID_RSAES_OAEP) fail(`key encryption ${kea.algorithmId}, expected RSAES-OAEP`);
  let params: pkijs.RSAESOAEPParams;
  try {
    params = new pkijs.RSAESOAEPParams({ schema: kea.algorithmParams });
  } catch {
    fail('bad RSAES-OAEP parameters');
  }
  if (hashOid(params.hashAlgorithm) !== OID_SHA256) fail('OAEP hash is not SHA-256');
  if (params.maskGenAlgorithm.algorithmId !== OID_MGF1) fail('OAEP mask generation is not MGF1');
  let mgfHash: pkijs.AlgorithmIdentifier;
  try {
    mgfHash = new pkijs.AlgorithmIdentifier({ schema: params.maskGenAlgorithm.algorithmParams });
  } catch {
    fail('bad MGF1 parameters');
  }
  if (mgfHash.algorithmId !== OID_SHA256) fail('MGF1 hash is not SHA-256');
  const eci = enveloped.encryptedContentInfo;
  if (eci.contentType !== OID_DATA) fail(`encrypted content type ${eci.contentType}, expected data`);
  const cea = eci.contentEncryptionAlgorithm;
  if (cea.algorithmId !== OID_AES256_CBC) fail(`content encryption ${cea.algorithmId}, expected AES-256-CBC`);
  const ivBlock = cea.algorithmParams;
  if (!(ivBlock instanceof asn1js.OctetString)) fail('AES-256-CBC IV missing');
  const iv = Buffer.from(ivBlock.getValue());
  if (iv.length !== 16) fail(`IV of ${iv.length} bytes, expected 16`);
  if (!eci.encryptedContent) fail('encryptedContent missing');
  // Constructed (chunks, concatenated by getValue) and primitive encodings both arrive here as an OctetString.
  const encryptedContent = Buffer.from(eci.getEncryptedContent());
  if (encryptedContent.length === 0 || encryptedContent.length % 16 !== 0) fail('encryptedContent length');
  const rid = ktri.rid;
  const subjectKeyIdentifier = rid instanceof asn1js.OctetString ? Buffer.from(rid.getValue()) : null;
  return {
    subjectKeyIdentifier,
    encryptedKey: Buffer.from(ktri.encryptedKey.getValue()),
    iv,
    encryptedContent,
  };
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
