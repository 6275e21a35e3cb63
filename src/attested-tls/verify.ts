// Client side: is this TLS certificate the attested certificate of an enclave we trust? The document it
// carries is verified as any attestation document (signature, chain to the pinned root, PCRs, age, nonce:
// src/attestation/verify.ts), and then bound to the certificate: its public_key must be the certificate's
// own SubjectPublicKeyInfo, and the key PCR (certificate.ts KEY_PCR) must measure that key. The TLS
// handshake has already proved that the peer holds that key's private half, and that key never leaves the
// enclave, so the peer is the attested enclave.
import { createHash } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import { type DocumentJson, documentToJson } from '../attestation/describe.ts';
import { type VerifyOptions, verifyAttestation } from '../attestation/verify.ts';
import {
  type CertificateSummary,
  parseCertificate,
  spkiDer,
  summarizeCertificate,
} from '../attestation/x509.ts';
import { AttestationError } from '../errors.ts';
import { documentFromCertificate, expectedKeyPcr, KEY_PCR } from './certificate.ts';

/** What a client pins: the attestation policy, without the key (the certificate names it). */
export type AttestedTlsPolicy = Omit<VerifyOptions, 'publicKey'>;

export interface AttestedIdentity {
  /** The TLS certificate the peer presented. */
  certificate: CertificateSummary;
  /** SHA-256 of the certificate's SubjectPublicKeyInfo (stable across renewals of one enclave run). */
  public_key_sha256: string;
  /** The verified document. */
  attestation: DocumentJson;
  /** How old the document was when it was checked. */
  age_ms: number;
}

function toDer(cert: Uint8Array | PeerCertificate): Buffer {
  if (cert instanceof Uint8Array) return Buffer.from(cert);
  const raw = (cert as PeerCertificate | undefined)?.raw;
  if (!raw || raw.length === 0) throw new AttestationError('certificate', 'the peer sent no certificate');
  return raw;
}

/**
 * Verify an attested TLS certificate (DER, or the PeerCertificate of a TLS socket) against `policy`.
 * Resolves with the verified identity; rejects with AttestationError naming the failed check:
 * `certificate` (no or unreadable document), any check of verifyAttestation (`signature`, `chain`, `pcr`,
 * `nonce`, `age`, `debug`...), or `binding` (the document's public_key is not this certificate's key).
 */
export async function verifyAttestedCertificate(
  cert: Uint8Array | PeerCertificate,
  policy: AttestedTlsPolicy = {},
): Promise<AttestedIdentity> {
  const der = toDer(cert);
  let parsed: ReturnType<typeof parseCertificate>;
  try {
    parsed = parseCertificate(der);
  } catch (err) {
    throw new AttestationError('certificate', `the certificate is not DER: ${(err as Error).message}`);
  }
  const document = documentFromCertificate(parsed);
  const verified = await verifyAttestation(document, policy);
  const spki = spkiDer(parsed);
  if (!verified.publicKey) {
    throw new AttestationError(
      'binding',
      "the document has no public_key: it does not name the certificate's key",
    );
  }
  if (!verified.publicKey.equals(spki)) {
    throw new AttestationError(
      'binding',
      "the document's public_key is not this certificate's key (a certificate for another key carries it)",
    );
  }
  // The enclave locked KEY_PCR to its TLS key before making any document: a document attested for another
  // key inside the same enclave carries the real key's value there. (Absent: an enclave that never locked it,
  // which the pinned PCR0 decides; a document cannot drop a locked PCR.)
  const keyPcr = verified.pcrs.get(KEY_PCR);
  if (keyPcr && !keyPcr.equals(expectedKeyPcr(spki))) {
    throw new AttestationError(
      'binding',
      `PCR${KEY_PCR} does not measure this certificate's key: the enclave's TLS key is another one`,
    );
  }
  return {
    certificate: summarizeCertificate(der),
    public_key_sha256: createHash('sha256').update(spki).digest('hex'),
    attestation: documentToJson(verified),
    age_ms: Date.now() - verified.timestamp,
  };
}
