// The condition keys KMS knows, spelled as AWS documents them, and the KMS actions a key policy's verdicts
// depend on. One place for both the generator and the linter.
//
// Condition key names are case-insensitive in IAM (and in the emulator), so `ImageSHA384` works; the
// linter only warns about it. A key KMS does not know is never in the request context: a positive
// condition on it never holds (the enclave is locked out) and a negated one always holds (a leak).

export const ATTESTATION_PREFIX = 'kms:RecipientAttestation:';

/** Nitro Enclaves have 32 PCRs (0-15 locked at boot, 16-31 extendable by the app); ImageSha384 = PCR0. */
export const NITRO_PCR_COUNT = 32;
/** A TPM 2.0 has 24 PCRs; NitroTPM documents carry them as kms:RecipientAttestation:NitroTPMPCR<N>. */
export const NITROTPM_PCR_COUNT = 24;
/** PCR values are SHA-384 digests: 48 bytes, 96 hex characters (lower case in attestation documents). */
export const PCR_HEX_LENGTH = 96;
/** PCRs that a debug-mode enclave reports as all zeros (its image is not measured). */
export const DEBUG_ZERO_PCRS = [0, 1, 2];
/** PCRs that measure what runs: the image (0), kernel (1), application (2), signing certificate (8). */
export const IMAGE_PCRS = [0, 1, 2, 8];

const HEX_PCR = new RegExp(`^[0-9a-fA-F]{${PCR_HEX_LENGTH}}$`);

/** Whether a value is one a document can carry in a PCR (96 hex characters, either case). */
export const isPcrHex = (value: string): boolean => HEX_PCR.test(value);

/**
 * What is wrong with `value` as the measurement a key pins, or undefined: `length` (not 96 hex
 * characters: no document carries it) or `debug` (all zeros in PCR0-2: every debug-mode enclave has it).
 * `text` completes a sentence whose subject names the value.
 */
export function pcrValueProblem(
  value: string,
  measures: { kind: 'nitro' | 'tpm'; pcr: number },
): { problem: 'length' | 'debug'; text: string } | undefined {
  if (!isPcrHex(value)) {
    const nonHex = /^[0-9a-fA-F]*$/.test(value) ? '' : ' with non-hex ones';
    return {
      problem: 'length',
      text: `must be ${PCR_HEX_LENGTH} hex characters (a SHA-384 digest), not ${value.length} characters${nonHex}`,
    };
  }
  if (/^0+$/.test(value) && measures.kind === 'nitro' && DEBUG_ZERO_PCRS.includes(measures.pcr))
    return { problem: 'debug', text: 'is all zeros: that is what every debug-mode enclave reports' };
  return undefined;
}

export const imageKey = `${ATTESTATION_PREFIX}ImageSha384`;
export const pcrKey = (n: number) => `${ATTESTATION_PREFIX}PCR${n}`;
export const tpmPcrKey = (n: number) => `${ATTESTATION_PREFIX}NitroTPMPCR${n}`;

/** Every attestation key KMS knows, as documented. */
export const ATTESTATION_KEYS: readonly string[] = [
  imageKey,
  ...Array.from({ length: NITRO_PCR_COUNT }, (_, n) => pcrKey(n)),
  ...Array.from({ length: NITROTPM_PCR_COUNT }, (_, n) => tpmPcrKey(n)),
];

/** What an attestation key measures: a Nitro Enclave PCR (ImageSha384 = PCR 0) or a NitroTPM PCR. */
export function attestationKeyPcr(key: string): { kind: 'nitro' | 'tpm'; pcr: number } | undefined {
  const canonical = canonicalKey(key);
  if (!canonical?.startsWith(ATTESTATION_PREFIX)) return undefined;
  const name = canonical.slice(ATTESTATION_PREFIX.length);
  if (name === 'ImageSha384') return { kind: 'nitro', pcr: 0 };
  const m = /^(NitroTPM)?PCR(\d+)$/.exec(name)!;
  return { kind: m[1] ? 'tpm' : 'nitro', pcr: Number(m[2]) };
}

// KMS's own condition keys (AWS KMS condition keys reference) and the global ones a key policy may use.
const KMS_KEYS = [
  'kms:BypassPolicyLockoutSafetyCheck',
  'kms:CallerAccount',
  'kms:CustomerMasterKeySpec',
  'kms:CustomerMasterKeyUsage',
  'kms:DataKeyPairSpec',
  'kms:EncryptionAlgorithm',
  'kms:EncryptionContextKeys',
  'kms:ExpirationModel',
  'kms:GrantConstraintType',
  'kms:GrantIsForAWSResource',
  'kms:GrantOperations',
  'kms:GranteePrincipal',
  'kms:KeyAgreementAlgorithm',
  'kms:KeyOrigin',
  'kms:KeySpec',
  'kms:KeyUsage',
  'kms:MacAlgorithm',
  'kms:MessageType',
  'kms:MultiRegion',
  'kms:MultiRegionKeyType',
  'kms:PrimaryRegion',
  'kms:ReEncryptOnSameKey',
  'kms:ReplicaRegion',
  'kms:RequestAlias',
  'kms:ResourceAliases',
  'kms:RetiringPrincipal',
  'kms:RotationPeriodInDays',
  'kms:ScheduleKeyDeletionPendingWindowInDays',
  'kms:SigningAlgorithm',
  'kms:ValidTo',
  'kms:ViaService',
  'kms:WrappingAlgorithm',
  'kms:WrappingKeySpec',
];
const GLOBAL_KEYS = [
  'aws:CalledVia',
  'aws:CalledViaFirst',
  'aws:CalledViaLast',
  'aws:CurrentTime',
  'aws:EpochTime',
  'aws:MultiFactorAuthPresent',
  'aws:PrincipalAccount',
  'aws:PrincipalArn',
  'aws:PrincipalIsAWSService',
  'aws:PrincipalOrgID',
  'aws:PrincipalOrgPaths',
  'aws:PrincipalServiceName',
  'aws:PrincipalType',
  'aws:RequestedRegion',
  'aws:ResourceAccount',
  'aws:ResourceOrgID',
  'aws:SecureTransport',
  'aws:SourceAccount',
  'aws:SourceArn',
  'aws:SourceIp',
  'aws:SourceOrgID',
  'aws:SourceVpc',
  'aws:SourceVpce',
  'aws:TagKeys',
  'aws:userid',
  'aws:username',
  'aws:ViaAWSService',
];
/** Families whose last part is the user's own (an encryption context key, a tag key). */
const KEY_FAMILIES = ['kms:EncryptionContext:', 'aws:PrincipalTag/', 'aws:RequestTag/', 'aws:ResourceTag/'];

const CANONICAL = new Map(
  [...ATTESTATION_KEYS, ...KMS_KEYS, ...GLOBAL_KEYS].map((k) => [k.toLowerCase(), k]),
);

/** The documented spelling of `key` (matched case-insensitively, as IAM does), or undefined if unknown. */
export function canonicalKey(key: string): string | undefined {
  const known = CANONICAL.get(key.toLowerCase());
  if (known) return known;
  const family = KEY_FAMILIES.find((f) => key.toLowerCase().startsWith(f.toLowerCase()));
  return family && key.length > family.length ? family + key.slice(family.length) : undefined;
}

/** The actions that accept a Recipient (an attestation document) and return a secret: the app needs them. */
export const ATTESTING_ACTIONS = [
  'kms:Decrypt',
  'kms:GenerateDataKey',
  'kms:GenerateDataKeyPair',
  'kms:DeriveSharedSecret',
] as const;
/**
 * Actions that yield a plaintext without accepting a Recipient, so no attestation condition can ever hold
 * for them: ReEncryptFrom decrypts under this key and re-encrypts under one the caller holds (the caller
 * then decrypts that); CreateGrant gives a grantee Decrypt through a grant, and grants carry no
 * attestation condition. GenerateDataKeyWithoutPlaintext, GenerateDataKeyPairWithoutPlaintext, Encrypt and
 * ReEncryptTo yield no plaintext; GenerateRandom is not a key operation (IAM policies govern it).
 */
export const INDIRECT_PLAINTEXT_ACTIONS = ['kms:ReEncryptFrom', 'kms:CreateGrant'] as const;
/** Key administration without any action that yields a plaintext (no CreateGrant, no ReEncrypt*). */
export const ADMIN_ACTIONS = [
  'kms:DescribeKey',
  'kms:GetKeyPolicy',
  'kms:PutKeyPolicy',
  'kms:ListKeyPolicies',
  'kms:ListGrants',
  'kms:RevokeGrant',
  'kms:ListResourceTags',
  'kms:TagResource',
  'kms:UntagResource',
  'kms:EnableKey',
  'kms:DisableKey',
  'kms:UpdateKeyDescription',
  'kms:EnableKeyRotation',
  'kms:DisableKeyRotation',
  'kms:GetKeyRotationStatus',
  'kms:CreateAlias',
  'kms:UpdateAlias',
  'kms:DeleteAlias',
  'kms:ScheduleKeyDeletion',
  'kms:CancelKeyDeletion',
];
