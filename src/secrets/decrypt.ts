// KMS Decrypt of a boot-time secret, the KMS proxy's attested way (src/kms/recipient.ts): a fresh NSM
// attestation document naming cloister's RSA key goes with the call as `Recipient`, so KMS checks the
// key policy's kms:RecipientAttestation conditions (PCR0...) and answers only CiphertextForRecipient,
// which nothing outside this enclave can open.
import type { SecretSpec } from '../config/types.ts';
import { secretError } from '../errors.ts';
import { parseReply, type RecipientKey, recipientSecret, withRecipient } from '../kms/recipient.ts';
import type { Nsm } from '../nsm/types.ts';
import { type AwsAccess, awsErrorCode } from './aws.ts';
import { failureCode } from './source.ts';

/** The region of a key ARN (arn:aws:kms:<region>:...), if key_id is one. */
export function regionOfKeyId(keyId: string | undefined): string | undefined {
  return /^arn:aws[a-z-]*:kms:([a-z0-9-]+):/.exec(keyId ?? '')?.[1];
}

/** The plaintext of `ciphertext`, decrypted by KMS for this enclave only. Throws SecretError('decrypt'). */
export async function attestedDecrypt(
  spec: SecretSpec,
  ciphertext: Buffer,
  region: string,
  deps: { aws: AwsAccess; key: RecipientKey; nsm: Pick<Nsm, 'attestation'> },
): Promise<Buffer> {
  const fail = (reason: string, what: string, cause?: unknown): never => {
    throw secretError(
      'decrypt',
      spec.name,
      reason,
      `secret ${spec.name}: KMS Decrypt failed: ${what}`,
      cause === undefined ? undefined : { cause },
    );
  };
  const input: Record<string, unknown> = { CiphertextBlob: ciphertext.toString('base64') };
  if (spec.key_id !== undefined) input.KeyId = spec.key_id;
  if (spec.encryption_context !== undefined) input.EncryptionContext = spec.encryption_context;
  const kms = deps.aws.kms();
  let reply: Awaited<ReturnType<typeof kms.send>>;
  try {
    const body = await withRecipient(input, deps.key, deps.nsm);
    reply = await kms.send(await kms.sign(region, 'TrentService.Decrypt', body));
  } catch (err) {
    return fail(failureCode(err), (err as Error).message, err);
  }
  if (reply.status !== 200) {
    const { code, message } = awsErrorCode(reply);
    return fail(code, `${code}${message ? `: ${message}` : ''}`);
  }
  try {
    return recipientSecret(parseReply(reply.body), deps.key);
  } catch (err) {
    return fail(failureCode(err), (err as Error).message, err);
  }
}
