// A JSON view of an attestation document for people and scripts (CLI output, the API's JSON form).
import type { AttestationDocument } from './document.ts';
import { type CertificateSummary, summarizeCertificate } from './x509.ts';

export interface DocumentJson {
  module_id: string;
  digest: string;
  timestamp: string;
  timestamp_ms: number;
  /** PCR0 all zeros: the enclave runs in debug mode. */
  debug: boolean;
  pcrs: Record<string, string>;
  certificate: CertificateSummary;
  cabundle: CertificateSummary[];
  public_key: string | null;
  user_data: string | null;
  nonce: string | null;
}

function hex(b: Uint8Array | null): string | null {
  return b ? Buffer.from(b).toString('hex') : null;
}

export function documentToJson(doc: AttestationDocument): DocumentJson {
  const pcrs: Record<string, string> = {};
  for (const [i, v] of [...doc.pcrs].sort((a, b) => a[0] - b[0])) pcrs[String(i)] = v.toString('hex');
  const pcr0 = doc.pcrs.get(0);
  return {
    module_id: doc.moduleId,
    digest: doc.digest,
    timestamp: new Date(doc.timestamp).toISOString(),
    timestamp_ms: doc.timestamp,
    debug: !pcr0 || pcr0.every((b) => b === 0),
    pcrs,
    certificate: summarizeCertificate(doc.certificate),
    cabundle: doc.cabundle.map((c) => summarizeCertificate(c)),
    public_key: hex(doc.publicKey),
    user_data: hex(doc.userData),
    nonce: hex(doc.nonce),
  };
}
