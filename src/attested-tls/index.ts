// The package's `cloister/attested-tls` entry (package.json "exports"): what a Node client needs to pin
// an enclave's PCRs on its own TLS connections. docs/attested-tls.md, "From Node".

export { AWS_NITRO_ROOT_G1_PEM } from '../attestation/roots.ts';
export { type AttestationCheck, AttestationError, AttestedTlsConnectError } from '../errors.ts';
export { ATTESTATION_OID } from './certificate.ts';
export {
  AttestedAgent,
  type AttestedAgentOptions,
  type AttestedConnection,
  type AttestedConnectOptions,
  connectAttested,
} from './client.ts';
export { NONCE_SNI_SUFFIX, nonceFromServername, nonceServername } from './sni-nonce.ts';
export { type AttestedIdentity, type AttestedTlsPolicy, verifyAttestedCertificate } from './verify.ts';
