// A client's nonce carried in the TLS handshake's server name (SNI), as Evervault's RA-TLS does: the
// client connects with servername `<nonce hex>.nonce.cloister.invalid` and the enclave answers with a
// certificate whose document carries that nonce, made during this handshake. `.invalid` (RFC 2606) never
// resolves, so the name can mean nothing else. One DNS label holds at most 63 characters: 16 to 31 bytes.
export const NONCE_SNI_SUFFIX = '.nonce.cloister.invalid';
export const NONCE_MIN_BYTES = 16;
export const NONCE_MAX_BYTES = 31;

const PATTERN = new RegExp(
  `^((?:[0-9a-f]{2}){${NONCE_MIN_BYTES},${NONCE_MAX_BYTES}})${NONCE_SNI_SUFFIX.replace(/\./g, '\\.')}$`,
);

/** The server name that asks for `nonce`. */
export function nonceServername(nonce: Uint8Array): string {
  if (nonce.length < NONCE_MIN_BYTES || nonce.length > NONCE_MAX_BYTES) {
    throw new RangeError(`a nonce in the server name is ${NONCE_MIN_BYTES} to ${NONCE_MAX_BYTES} bytes`);
  }
  return `${Buffer.from(nonce).toString('hex')}${NONCE_SNI_SUFFIX}`;
}

/** The nonce a server name asks for, or null when it asks for none (any other name, or no name). */
export function nonceFromServername(name: string | undefined | null): Buffer | null {
  if (!name) return null;
  const m = PATTERN.exec(name.toLowerCase());
  return m ? Buffer.from(m[1]!, 'hex') : null;
}
