// The emulator's CiphertextBlob: AES-256-GCM under the key's material, the key id inside (so Decrypt
// needs only the blob, as with KMS) and the encryption context bound in as AAD.
//   0x01 | key uuid (16 bytes) | iv (12) | tag (16) | ciphertext
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';

const VERSION = 0x01;
const HEADER = 1 + 16 + 12 + 16;

function uuidBytes(uuid: string): Buffer {
  return Buffer.from(uuid.replace(/-/g, ''), 'hex');
}

function bytesUuid(b: Buffer): string {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** Canonical AAD: version, key id and the context's pairs sorted by key (order-independent, as in KMS). */
function aad(keyId: Buffer, context: Record<string, string>): Buffer {
  const pairs = Object.entries(context).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return Buffer.concat([Buffer.from([VERSION]), keyId, Buffer.from(JSON.stringify(pairs), 'utf8')]);
}

export function seal(
  keyId: string,
  material: Buffer,
  plaintext: Uint8Array,
  context: Record<string, string>,
): Buffer {
  const id = uuidBytes(keyId);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', material, iv);
  cipher.setAAD(aad(id, context));
  const ct = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), id, iv, cipher.getAuthTag(), ct]);
}

/** The key a blob names, or null if it is not one of ours. */
export function blobKeyId(blob: Buffer): string | null {
  if (blob.length < HEADER || blob[0] !== VERSION) return null;
  return bytesUuid(blob.subarray(1, 17));
}

/** Decrypts; null if the blob was tampered with or the context differs. */
export function open(material: Buffer, blob: Buffer, context: Record<string, string>): Buffer | null {
  const id = blob.subarray(1, 17);
  const iv = blob.subarray(17, 29);
  const tag = blob.subarray(29, 45);
  try {
    const decipher = createDecipheriv('aes-256-gcm', material, iv);
    decipher.setAAD(aad(id, context));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(blob.subarray(HEADER)), decipher.final()]);
  } catch {
    return null;
  }
}
