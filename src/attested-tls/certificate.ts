// The attested TLS certificate: a self-signed X.509 certificate for a key generated inside the enclave,
// carrying an NSM attestation document whose `public_key` is that certificate's SubjectPublicKeyInfo.
// Building it (enclave side) and reading the document back out (client side) live together so the
// encoding is decided in one place (docs/attested-tls.md, "The certificate"):
//
//   extension ATTESTATION_OID, non-critical, extnValue = DER OCTET STRING { COSE_Sign1 document bytes }
//   document.public_key = DER SubjectPublicKeyInfo of the certificate's key (byte for byte)
import { createHash, webcrypto } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { AttestationError } from '../errors.ts';
import { EKU_SERVER_AUTH, generateEcKey, issueCertificate, KU } from '../nsm/ca.ts';

/**
 * The extension that carries the document. An OID under 2.25 (ITU-T X.667: a UUID read as one integer)
 * needs no registration and cannot collide with anyone else's; this one was made from a random UUID
 * (f6d11a4e-678b-4cd5-8c80-fb6d05e1cee4) for cloister.
 */
export const ATTESTATION_OID = '2.25.328075810561014814304407295221838237412';
/**
 * The same OID as asn1js names it in a parsed certificate's extnID: it writes an arc above 2^53 as
 * hex in braces ("2.25.{036d...}"), so parsed extensions are matched against this rendering.
 */
const ATTESTATION_OID_PARSED = new asn1js.ObjectIdentifier({ value: ATTESTATION_OID }).getValue();

/**
 * The PCR cloister extends with the attested key and locks before the first document (docs/attested-tls.md,
 * "The key PCR"). Locked PCRs are in every document the enclave makes from then on, whoever asks for it, so
 * a document that some other path attested for a caller-chosen key (an app that forwards the attestation
 * API, say) still names the real TLS key here and fails the binding check. The last PCR: the one least
 * likely to be an app's.
 */
export const KEY_PCR = 31;

/** What the NSM is asked to extend KEY_PCR with: SHA-384 of the key's SubjectPublicKeyInfo. */
export function keyPcrData(spki: Uint8Array): Buffer {
  return createHash('sha384').update(spki).digest();
}

/** KEY_PCR's value after one extension of the all-zero PCR with keyPcrData(spki), as the NSM computes it. */
export function expectedKeyPcr(spki: Uint8Array): Buffer {
  return createHash('sha384').update(Buffer.alloc(48)).update(keyPcrData(spki)).digest();
}

/** The key of the attested certificate: P-256 (fast handshakes; OpenSSL's P-256 code is the quickest). */
export const ATTESTED_CURVE = 'P-256';

export interface AttestedKey {
  keys: webcrypto.CryptoKeyPair;
  /** DER SubjectPublicKeyInfo of the public key: what the document's public_key holds. */
  spki: Buffer;
}

/** A key pair for the attested certificate; the private key stays in this process. */
export async function generateAttestedKey(): Promise<AttestedKey> {
  const keys = await generateEcKey(ATTESTED_CURVE);
  const spki = Buffer.from(await webcrypto.subtle.exportKey('spki', keys.publicKey));
  return { keys, spki };
}

export interface BuildOptions {
  key: AttestedKey;
  /** The NSM document, made with public_key = key.spki. */
  document: Uint8Array;
  /** Subject CN (the manifest's name). */
  commonName: string;
  dnsNames: string[];
  notBefore: Date;
  notAfter: Date;
}

/** The certificate (DER) carrying `document` in the ATTESTATION_OID extension. */
export async function buildAttestedCertificate(o: BuildOptions): Promise<Buffer> {
  const ext = new pkijs.Extension({
    extnID: ATTESTATION_OID,
    critical: false,
    extnValue: new asn1js.OctetString({ valueHex: new Uint8Array(o.document) }).toBER(false),
  });
  const issued = await issueCertificate({
    subject: [
      ['O', 'cloister attested TLS'],
      ['CN', o.commonName],
    ],
    publicKey: o.key.keys.publicKey,
    signingKey: o.key.keys.privateKey,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    ca: false,
    keyUsage: [KU.digitalSignature],
    hash: 'SHA-256',
    dnsNames: o.dnsNames,
    extendedKeyUsage: [EKU_SERVER_AUTH],
    extensions: [ext],
  });
  return issued.der;
}

/** Whether a parsed extension is the attestation extension. */
export function isAttestationExtension(ext: pkijs.Extension): boolean {
  return ext.extnID === ATTESTATION_OID_PARSED;
}

/** The document bytes carried by a parsed certificate; AttestationError('certificate') if there are none. */
export function documentFromCertificate(cert: pkijs.Certificate): Buffer {
  const ext = cert.extensions?.find(isAttestationExtension);
  if (!ext) {
    throw new AttestationError(
      'certificate',
      `the certificate carries no attestation document (no extension ${ATTESTATION_OID})`,
    );
  }
  const raw = ext.extnValue.valueBlock.valueHexView;
  const parsed = asn1js.fromBER(raw);
  if (parsed.offset !== raw.length || !(parsed.result instanceof asn1js.OctetString)) {
    throw new AttestationError('certificate', 'the attestation extension is not one DER OCTET STRING');
  }
  const doc = parsed.result.valueBlock.valueHexView;
  if (doc.length === 0) throw new AttestationError('certificate', 'the attestation extension is empty');
  return Buffer.from(doc);
}
