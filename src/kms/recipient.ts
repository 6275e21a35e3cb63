// The proxy's recipient key and what it does with it: the RSA key pair KMS encrypts attested replies to,
// the Recipient (an NSM attestation document naming the key) added to an attested call, and the reply
// opened again (CiphertextForRecipient decrypted into the field the app's SDK expects).
import { createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { promisify } from 'node:util';
import { withDeadline } from '../deadline.ts';
import { KmsAttestationError, KmsBadReplyError, KmsNotReadyError } from '../errors.ts';
import type { Nsm } from '../nsm/types.ts';
import { decryptEnvelope, spkiKeyId } from './cms.ts';

export interface RecipientKey {
  privateKey: KeyObject;
  spki: Buffer;
  keyId: Buffer;
}

/**
 * The key pair, made in the background at start (a 2048-bit RSA key takes tens of milliseconds to
 * seconds): neither it nor the credentials may delay the app's launch.
 */
export class RecipientKeys {
  private key: RecipientKey | null = null;
  private error: string | null = null;
  private readonly made: Promise<RecipientKey>;

  /** `given`: a test hook, use this RSA private key (e.g. a published vector's) instead of a fresh one. */
  constructor(given?: KeyObject) {
    const pair = given
      ? Promise.resolve({ privateKey: given, publicKey: createPublicKey(given) })
      : promisify(generateKeyPair)('rsa', { modulusLength: 2048, publicExponent: 65537 });
    this.made = pair.then(
      ({ privateKey, publicKey }) => {
        const spki = publicKey.export({ type: 'spki', format: 'der' });
        this.key = { privateKey, spki, keyId: spkiKeyId(spki) };
        return this.key;
      },
      (err: Error) => {
        this.error = err.message;
        throw err;
      },
    );
    this.made.catch(() => {});
  }

  /** The key, waiting at most `ms` for it; KmsNotReadyError when it is not there in time. */
  async get(ms: number): Promise<RecipientKey> {
    if (this.key) return this.key;
    try {
      return await withDeadline(
        this.made,
        ms,
        () => new Error('the RSA recipient key is still being generated'),
      );
    } catch (err) {
      throw new KmsNotReadyError(`not ready: ${this.error ?? (err as Error).message}`, { cause: err });
    }
  }
}

/** Adds a Recipient naming `key` (a fresh attestation document) to an attested call's input. */
export async function withRecipient(
  input: Record<string, unknown>,
  key: RecipientKey,
  nsm: Pick<Nsm, 'attestation'>,
): Promise<Buffer> {
  let doc: Uint8Array;
  try {
    doc = await nsm.attestation({ public_key: key.spki });
  } catch (err) {
    throw new KmsAttestationError(`attestation failed: ${(err as Error).message}`, { cause: err });
  }
  const out = {
    ...input,
    Recipient: {
      AttestationDocument: Buffer.from(doc).toString('base64'),
      KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256',
    },
  };
  return Buffer.from(JSON.stringify(out), 'utf8');
}

/** Takes CiphertextForRecipient out of a KMS reply and puts the decrypted secret in its field. */
export function openReply(body: Buffer, field: string, key: RecipientKey): Record<string, unknown> {
  const out = parseReply(body);
  const secret = recipientSecret(out, key);
  delete out.CiphertextForRecipient;
  out[field] = secret.toString('base64');
  return out;
}

/** A KMS reply body as a JSON object, or KmsBadReplyError. */
export function parseReply(body: Buffer): Record<string, unknown> {
  let out: Record<string, unknown>;
  try {
    out = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    if (!out || typeof out !== 'object' || Array.isArray(out)) throw new Error('not an object');
  } catch {
    throw new KmsBadReplyError('the reply from KMS is not a JSON object');
  }
  return out;
}

/** The secret of a parsed attested reply: its CiphertextForRecipient decrypted with `key` (raw bytes). */
export function recipientSecret(reply: Record<string, unknown>, key: RecipientKey): Buffer {
  const cfr = reply.CiphertextForRecipient;
  if (typeof cfr !== 'string') {
    throw new KmsBadReplyError('the reply from KMS has no CiphertextForRecipient');
  }
  try {
    return decryptEnvelope(Buffer.from(cfr, 'base64'), key.privateKey, key.keyId);
  } catch (err) {
    throw new KmsBadReplyError((err as Error).message, { cause: err });
  }
}
