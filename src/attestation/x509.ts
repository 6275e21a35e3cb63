// Small X.509 helpers over pkijs/asn1js: strict DER parsing, readable names (PEM <-> DER is in
// src/encoding/pem.ts, re-exported here).
import { createHash } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { derToPem, pemBlocks, pemToDer } from '../encoding/pem.ts';

export { derToPem, pemBlocks, pemToDer };

// Parsing is the dominant cost of verification (~1 ms a certificate) and the same CA certificates
// arrive with every document, so parsed certificates are kept by DER hash (bounded, oldest out).
// Callers treat them as read-only.
const parsed = new Map<string, pkijs.Certificate>();
const PARSED_MAX = 512;

export function clearParsedCertificates(): void {
  parsed.clear();
}

/** Parse exactly one DER certificate (no trailing bytes, no BER leniency beyond asn1js's). */
export function parseCertificate(der: Uint8Array): pkijs.Certificate {
  const key = createHash('sha256').update(der).digest('hex');
  const hit = parsed.get(key);
  if (hit) return hit;
  const cert = parseUncached(Buffer.from(der));
  if (parsed.size >= PARSED_MAX) parsed.delete(parsed.keys().next().value as string);
  parsed.set(key, cert);
  return cert;
}

function parseUncached(buf: Buffer): pkijs.Certificate {
  const asn1 = asn1js.fromBER(buf);
  if (asn1.offset === -1) throw new Error(`not DER: ${asn1.result.error || 'parse error'}`);
  if (asn1.offset !== buf.length)
    throw new Error(`trailing bytes after certificate (${buf.length - asn1.offset})`);
  return new pkijs.Certificate({ schema: asn1.result });
}

const ATTR_NAMES: Record<string, string> = {
  '2.5.4.3': 'CN',
  '2.5.4.6': 'C',
  '2.5.4.7': 'L',
  '2.5.4.8': 'ST',
  '2.5.4.10': 'O',
  '2.5.4.11': 'OU',
};

/** RFC 4514-ish rendering, most significant RDN first as OpenSSL prints it (C=US, O=..., CN=...). */
export function nameToString(name: pkijs.RelativeDistinguishedNames): string {
  return name.typesAndValues
    .map((tv) => {
      const key = ATTR_NAMES[tv.type] ?? tv.type;
      const v = (tv.value as { valueBlock?: { value?: unknown } }).valueBlock?.value;
      return `${key}=${typeof v === 'string' ? v : tv.value.toString()}`;
    })
    .join(', ');
}

export interface CertificateSummary {
  subject: string;
  issuer: string;
  serial: string;
  notBefore: string;
  notAfter: string;
  sha256: string;
}

export function summarizeCertificate(der: Uint8Array): CertificateSummary {
  const cert = parseCertificate(der);
  return {
    subject: nameToString(cert.subject),
    issuer: nameToString(cert.issuer),
    serial: Buffer.from(cert.serialNumber.valueBlock.valueHexView).toString('hex'),
    notBefore: cert.notBefore.value.toISOString(),
    notAfter: cert.notAfter.value.toISOString(),
    sha256: createHash('sha256').update(der).digest('hex'),
  };
}

/** The certificate's SubjectPublicKeyInfo as DER. */
export function spkiDer(cert: pkijs.Certificate): Buffer {
  return Buffer.from(cert.subjectPublicKeyInfo.toSchema().toBER(false));
}

export function findExtension(cert: pkijs.Certificate, oid: string): pkijs.Extension | undefined {
  return cert.extensions?.find((e) => e.extnID === oid);
}
