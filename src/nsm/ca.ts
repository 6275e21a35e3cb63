// Certificate issuing for the software NSM: P-384 keys and ecdsa-with-SHA384 certificates shaped
// like AWS's Nitro chain (root, regional, zonal and instance CAs, a short-lived leaf). The attested TLS
// certificate (src/attested-tls/) is issued here too: P-256, SHA-256, with a SAN and its own extension.
import { createHash, randomBytes, webcrypto } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

const EC_P384 = { name: 'ECDSA', namedCurve: 'P-384' } as const;

export type Curve = 'P-256' | 'P-384';

export const KU = {
  digitalSignature: 0,
  nonRepudiation: 1,
  keyCertSign: 5,
  cRLSign: 6,
} as const;

export async function generateP384(): Promise<webcrypto.CryptoKeyPair> {
  return generateEcKey('P-384');
}

/** An extractable ECDSA key pair on `curve`. */
export async function generateEcKey(curve: Curve): Promise<webcrypto.CryptoKeyPair> {
  return (await webcrypto.subtle.generateKey({ name: 'ECDSA', namedCurve: curve }, true, [
    'sign',
    'verify',
  ])) as webcrypto.CryptoKeyPair;
}

export async function exportPkcs8(key: webcrypto.CryptoKey): Promise<Buffer> {
  return Buffer.from(await webcrypto.subtle.exportKey('pkcs8', key));
}

export async function importPkcs8(der: Uint8Array): Promise<webcrypto.CryptoKey> {
  return webcrypto.subtle.importKey('pkcs8', der, EC_P384, true, ['sign']);
}

/** DER BIT STRING for a KeyUsage made of the given bit numbers (bit 0 = most significant). */
function keyUsageBits(bits: number[]): asn1js.BitString {
  const max = Math.max(...bits);
  const bytes = new Uint8Array(Math.floor(max / 8) + 1);
  for (const b of bits) bytes[b >> 3] = (bytes[b >> 3] ?? 0) | (0x80 >> (b & 7));
  return new asn1js.BitString({ valueHex: bytes.buffer, unusedBits: 7 - (max & 7) });
}

function name(rdns: Array<[string, string]>): pkijs.RelativeDistinguishedNames {
  // One attribute per RDN (C=US, O=..., CN=...), as OpenSSL and AWS write names; pkijs's own
  // constructor would put them all in a single multi-valued RDN.
  const oids: Record<string, string> = { C: '2.5.4.6', O: '2.5.4.10', OU: '2.5.4.11', CN: '2.5.4.3' };
  const seq = new asn1js.Sequence({
    value: rdns.map(
      ([k, v]) =>
        new asn1js.Set({
          value: [
            new asn1js.Sequence({
              value: [
                new asn1js.ObjectIdentifier({ value: oids[k] ?? k }),
                k === 'C' ? new asn1js.PrintableString({ value: v }) : new asn1js.Utf8String({ value: v }),
              ],
            }),
          ],
        }),
    ),
  });
  return pkijs.RelativeDistinguishedNames.fromBER(seq.toBER(false));
}

function time(d: Date): pkijs.Time {
  // RFC 5280: UTCTime through 2049, GeneralizedTime from 2050.
  return new pkijs.Time({ type: d.getUTCFullYear() < 2050 ? 0 : 1, value: d });
}

export interface IssueOptions {
  subject: Array<[string, string]>;
  publicKey: webcrypto.CryptoKey;
  /** Omit for a self-signed certificate (then `signingKey` is the subject's own private key). */
  issuer?: pkijs.Certificate;
  signingKey: webcrypto.CryptoKey;
  notBefore: Date;
  notAfter: Date;
  ca: boolean;
  pathLen?: number;
  keyUsage: number[];
  /** Signature hash (default SHA-384, the Nitro chain's; SHA-256 suits a P-256 key). */
  hash?: 'SHA-256' | 'SHA-384';
  /** subjectAltName dNSName entries (none: no SAN extension). */
  dnsNames?: string[];
  /** Extended key usage OIDs (none: no EKU extension). */
  extendedKeyUsage?: string[];
  /** Further extensions, appended after the standard ones. */
  extensions?: pkijs.Extension[];
}

export const EKU_SERVER_AUTH = '1.3.6.1.5.5.7.3.1';

export interface Issued {
  der: Buffer;
  cert: pkijs.Certificate;
}

export async function issueCertificate(o: IssueOptions): Promise<Issued> {
  const cert = new pkijs.Certificate();
  cert.version = 2;
  const serial = randomBytes(16);
  serial[0] = (serial[0] ?? 0) & 0x7f; // positive INTEGER
  if (serial[0] === 0) serial[0] = 1; // and minimal
  cert.serialNumber = new asn1js.Integer({ valueHex: serial });
  cert.subject = name(o.subject);
  cert.issuer = o.issuer ? o.issuer.subject : cert.subject;
  // Second precision in the encoding; floor so notBefore is never after the caller's "now".
  cert.notBefore = time(new Date(Math.floor(o.notBefore.getTime() / 1000) * 1000));
  cert.notAfter = time(new Date(Math.floor(o.notAfter.getTime() / 1000) * 1000));
  await cert.subjectPublicKeyInfo.importKey(o.publicKey);

  const spki = cert.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView;
  const ski = createHash('sha1').update(spki).digest();
  const issuerSki = o.issuer
    ? createHash('sha1')
        .update(o.issuer.subjectPublicKeyInfo.subjectPublicKey.valueBlock.valueHexView)
        .digest()
    : ski;
  const bc = new pkijs.BasicConstraints(
    o.ca ? (o.pathLen === undefined ? { cA: true } : { cA: true, pathLenConstraint: o.pathLen }) : {},
  );
  cert.extensions = [
    new pkijs.Extension({
      extnID: '2.5.29.19',
      critical: true,
      extnValue: bc.toSchema().toBER(false),
      parsedValue: bc,
    }),
    new pkijs.Extension({
      extnID: '2.5.29.14',
      extnValue: new asn1js.OctetString({ valueHex: ski }).toBER(false),
    }),
    new pkijs.Extension({
      extnID: '2.5.29.15',
      critical: true,
      extnValue: keyUsageBits(o.keyUsage).toBER(false),
    }),
  ];
  if (o.dnsNames && o.dnsNames.length > 0) {
    const san = new pkijs.AltName({
      altNames: o.dnsNames.map((value) => new pkijs.GeneralName({ type: 2, value })),
    });
    cert.extensions.push(
      new pkijs.Extension({ extnID: '2.5.29.17', extnValue: san.toSchema().toBER(false) }),
    );
  }
  if (o.extendedKeyUsage && o.extendedKeyUsage.length > 0) {
    const eku = new pkijs.ExtKeyUsage({ keyPurposes: o.extendedKeyUsage });
    cert.extensions.push(
      new pkijs.Extension({ extnID: '2.5.29.37', extnValue: eku.toSchema().toBER(false) }),
    );
  }
  if (o.issuer) {
    const aki = new pkijs.AuthorityKeyIdentifier({
      keyIdentifier: new asn1js.OctetString({ valueHex: issuerSki }),
    });
    cert.extensions.push(
      new pkijs.Extension({ extnID: '2.5.29.35', extnValue: aki.toSchema().toBER(false), parsedValue: aki }),
    );
  }
  cert.extensions.push(...(o.extensions ?? []));
  await cert.sign(o.signingKey, o.hash ?? 'SHA-384');
  const der = Buffer.from(cert.toSchema(true).toBER(false));
  return { der, cert: pkijs.Certificate.fromBER(der) };
}
