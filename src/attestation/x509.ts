// Small X.509 helpers over pkijs/asn1js: PEM <-> DER, strict DER parsing, readable names.
import { createHash } from 'node:crypto';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** All PEM blocks in `text` with the given label (e.g. CERTIFICATE, PUBLIC KEY). */
export function pemBlocks(text: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(PEM_RE)) {
    if (m[1] !== label) continue;
    const body = (m[2] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new Error(`invalid base64 in PEM ${label} block`);
    }
    out.push(Buffer.from(body, 'base64'));
  }
  return out;
}

/** The single PEM block with `label`; throws if there is none. */
export function pemToDer(text: string, label: string): Buffer {
  const [first] = pemBlocks(text, label);
  if (!first) throw new Error(`no PEM ${label} block found`);
  return first;
}

export function derToPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

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
