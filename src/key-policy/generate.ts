// `cloister kms policy`: a least-privilege key policy for a key only one enclave image may use.
//
//   KeyAdministration      admin   manage the key (no Decrypt, no ReEncrypt, no CreateGrant)
//   OperatorEncrypts       admin   Encrypt, GenerateDataKeyWithoutPlaintext: seal secrets for the enclave
//   EnclaveEncrypts        role    Encrypt, DescribeKey (Vault's awskms seal calls them; no plaintext)
//   EnclaveDecrypts        role    Decrypt... only with kms:RecipientAttestation:* = the given measurements
//   DenyPlaintextUnless<K> "*"     one Deny per pinned key: every plaintext-yielding action when K differs
//                                  or is missing, so a later Allow (the account's "Enable IAM User
//                                  Permissions" statement, an IAM policy, a grant) cannot reopen the leak.
import { UsageError } from '../errors.ts';
import {
  ADMIN_ACTIONS,
  ATTESTING_ACTIONS,
  INDIRECT_PLAINTEXT_ACTIONS,
  imageKey,
  NITRO_PCR_COUNT,
  NITROTPM_PCR_COUNT,
  pcrKey,
  pcrValueProblem,
  tpmPcrKey,
} from './condition-keys.ts';

export interface KeyPolicyRequest {
  /** The enclave's instance role (or any IAM role/user ARN the KMS proxy's credentials belong to). */
  role: string;
  /** The key administrator (a role, user, or the account root to delegate to IAM policies). */
  admin: string;
  /** PCR0 of the image (kms:RecipientAttestation:ImageSha384). */
  imageSha384?: string;
  /** Nitro Enclave PCRs by index (kms:RecipientAttestation:PCR<N>). */
  pcrs?: Record<number, string>;
  /** NitroTPM PCRs by index (kms:RecipientAttestation:NitroTPMPCR<N>). */
  nitroTpmPcrs?: Record<number, string>;
  /** The attesting actions the role gets (default Decrypt, GenerateDataKey, GenerateDataKeyPair). */
  actions?: string[];
}

export const DEFAULT_ENCLAVE_ACTIONS = ['kms:Decrypt', 'kms:GenerateDataKey', 'kms:GenerateDataKeyPair'];

const ROLE_RE = /^arn:aws(?:-[a-z-]+)?:iam::\d{12}:(?:role|user)\/[\w+=,.@/-]+$/;
const ADMIN_RE = /^arn:aws(?:-[a-z-]+)?:iam::\d{12}:(?:root|(?:role|user)\/[\w+=,.@/-]+)$/;

/** A PCR value as documents carry it (lower-case hex), or a UsageError naming the flag. */
function checkPcrValue(
  flag: string,
  value: string,
  measures: { kind: 'nitro' | 'tpm'; pcr: number },
): string {
  const wrong = pcrValueProblem(value, measures);
  if (wrong) throw new UsageError(`${flag} ${wrong.text}`);
  return value.toLowerCase();
}

/** The condition keys and values the enclave's document must carry. */
function pins(req: KeyPolicyRequest): Record<string, string> {
  const out: Record<string, string> = {};
  const nitro = Object.entries(req.pcrs ?? {});
  const tpm = Object.entries(req.nitroTpmPcrs ?? {});
  if ((nitro.length > 0 || req.imageSha384 !== undefined) && tpm.length > 0) {
    throw new UsageError(
      'a document is either a Nitro Enclave one (--image-sha384, --pcr) or a NitroTPM one (--nitrotpm-pcr): one policy pins one kind',
    );
  }
  if (req.imageSha384 !== undefined)
    out[imageKey] = checkPcrValue('--image-sha384', req.imageSha384, { kind: 'nitro', pcr: 0 });
  for (const [n, v] of nitro) {
    const i = Number(n);
    if (!Number.isInteger(i) || i < 0 || i >= NITRO_PCR_COUNT)
      throw new UsageError(`--pcr index must be 0..${NITRO_PCR_COUNT - 1}, not '${n}'`);
    out[pcrKey(i)] = checkPcrValue(`--pcr ${i}`, v, { kind: 'nitro', pcr: i });
  }
  if (out[imageKey] && out[pcrKey(0)] && out[imageKey] !== out[pcrKey(0)])
    throw new UsageError('--image-sha384 and --pcr 0 are the same measurement and differ');
  for (const [n, v] of tpm) {
    const i = Number(n);
    if (!Number.isInteger(i) || i < 0 || i >= NITROTPM_PCR_COUNT)
      throw new UsageError(`--nitrotpm-pcr index must be 0..${NITROTPM_PCR_COUNT - 1}, not '${n}'`);
    out[tpmPcrKey(i)] = checkPcrValue(`--nitrotpm-pcr ${i}`, v, { kind: 'tpm', pcr: i });
  }
  if (Object.keys(out).length === 0)
    throw new UsageError('give the measurements to pin: --image-sha384, --pcr N=HEX or --nitrotpm-pcr N=HEX');
  return out;
}

function enclaveActions(actions: string[] | undefined): string[] {
  if (!actions || actions.length === 0) return DEFAULT_ENCLAVE_ACTIONS;
  return [
    ...new Set(
      actions.map((a) => {
        const name = a.startsWith('kms:') ? a : `kms:${a}`;
        const known = ATTESTING_ACTIONS.find((x) => x.toLowerCase() === name.toLowerCase());
        if (!known)
          throw new UsageError(
            `--action must be one of ${ATTESTING_ACTIONS.map((x) => x.slice(4)).join(', ')} (the actions that take an attestation document), not '${a}'`,
          );
        return known;
      }),
    ),
  ];
}

/** The policy document (a plain object: JSON.stringify it). Throws UsageError on bad input. */
export function keyPolicy(req: KeyPolicyRequest): Record<string, unknown> {
  if (!ROLE_RE.test(req.role))
    throw new UsageError(
      `--role must be an IAM role or user ARN (arn:aws:iam::ACCOUNT:role/NAME), not '${req.role}'`,
    );
  if (!ADMIN_RE.test(req.admin))
    throw new UsageError(
      `--admin must be an IAM role, user or account root ARN (arn:aws:iam::ACCOUNT:role/NAME), not '${req.admin}'`,
    );
  const pinned = pins(req);
  const actions = enclaveActions(req.actions);
  // Every action that can yield a plaintext, whatever the role was given: the Deny closes them all.
  const plaintext = [...ATTESTING_ACTIONS, ...INDIRECT_PLAINTEXT_ACTIONS];
  return {
    Version: '2012-10-17',
    Id: 'cloister-enclave-key',
    Statement: [
      {
        Sid: 'KeyAdministration',
        Effect: 'Allow',
        Principal: { AWS: req.admin },
        Action: ADMIN_ACTIONS,
        Resource: '*',
      },
      {
        Sid: 'OperatorEncrypts',
        Effect: 'Allow',
        Principal: { AWS: req.admin },
        Action: ['kms:Encrypt', 'kms:GenerateDataKeyWithoutPlaintext'],
        Resource: '*',
      },
      {
        Sid: 'EnclaveEncrypts',
        Effect: 'Allow',
        Principal: { AWS: req.role },
        Action: ['kms:Encrypt', 'kms:DescribeKey'],
        Resource: '*',
      },
      {
        Sid: 'EnclaveDecryptsOnlyWhenAttested',
        Effect: 'Allow',
        Principal: { AWS: req.role },
        Action: actions,
        Resource: '*',
        Condition: { StringEqualsIgnoreCase: pinned },
      },
      ...Object.entries(pinned).map(([key, value]) => ({
        Sid: `DenyPlaintextUnless${key.split(':').at(-1)}`,
        Effect: 'Deny',
        Principal: { AWS: '*' },
        Action: plaintext,
        Resource: '*',
        Condition: { StringNotEqualsIgnoreCase: { [key]: value } },
      })),
    ],
  };
}
