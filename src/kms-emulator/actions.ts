// The KMS operations the emulator answers, with KMS's request fields, response fields and error types.
// Recipient (an attestation document) is honoured as KMS does: the document is verified against the
// configured root, its PCRs become the kms:RecipientAttestation:* condition keys, and the secret goes back
// only as CiphertextForRecipient (CMS to the document's RSA key), never as Plaintext.
import { generateKeyPair, randomBytes } from 'node:crypto';
import { promisify } from 'node:util';
import { blobKeyId, open, seal } from './ciphertext.ts';
import { KmsError } from './errors.ts';
import { evaluatePolicy, parsePolicy } from './policy.ts';
import { buildEnvelope } from './recipient.ts';
import type { KeyRecord, KeyStore } from './store.ts';

const generateKeyPairAsync = promisify(generateKeyPair);

export interface VerifiedRecipient {
  pcrs: Map<number, Buffer>;
  publicKey: Uint8Array;
}

export interface ActionContext {
  store: KeyStore;
  /** Verifies a Recipient's attestation document; throws KmsError when it cannot be trusted. */
  verifyRecipient: (doc: Buffer) => Promise<VerifiedRecipient>;
  /** The caller: key policies' Principal elements are matched against it; named in AccessDenied messages. */
  principal: string;
}

type Input = Record<string, unknown>;
type Handler = (ctx: ActionContext, input: Input) => Promise<Record<string, unknown>>;

function validation(message: string): never {
  throw new KmsError('ValidationException', message);
}

function str(input: Input, field: string, required: true): string;
function str(input: Input, field: string, required?: false): string | undefined;
function str(input: Input, field: string, required = false): string | undefined {
  const v = input[field];
  if (v === undefined || v === null) {
    if (required)
      validation(
        `1 validation error detected: Value null at '${lcFirst(field)}' failed to satisfy constraint: Member must not be null`,
      );
    return undefined;
  }
  if (typeof v !== 'string') throw new KmsError('SerializationException', `${field} must be a string`);
  return v;
}

function lcFirst(s: string): string {
  return s.charAt(0).toLowerCase() + s.slice(1);
}

function blob(input: Input, field: string, min: number, max: number): Buffer {
  const text = str(input, field, true);
  const bytes = Buffer.from(text, 'base64');
  if (bytes.length < min || bytes.length > max) {
    validation(
      `1 validation error detected: Value at '${lcFirst(field)}' failed to satisfy constraint: Member must have length ${bytes.length < min ? `greater than or equal to ${min}` : `less than or equal to ${max}`}`,
    );
  }
  return bytes;
}

function context(input: Input, field = 'EncryptionContext'): Record<string, string> {
  const v = input[field];
  if (v === undefined || v === null) return {};
  if (typeof v !== 'object' || Array.isArray(v))
    throw new KmsError('SerializationException', `${field} must be a map`);
  for (const x of Object.values(v))
    if (typeof x !== 'string')
      throw new KmsError('SerializationException', `${field} values must be strings`);
  return v as Record<string, string>;
}

function checkAlgorithm(input: Input, field = 'EncryptionAlgorithm'): void {
  const alg = str(input, field);
  if (alg !== undefined && alg !== 'SYMMETRIC_DEFAULT') {
    throw new KmsError(
      'InvalidKeyUsageException',
      `The encryption algorithm ${alg} is not supported by this key (SYMMETRIC_DEFAULT only).`,
    );
  }
}

const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Resolves a key id, key ARN, alias name or alias ARN. */
export function resolveKey(store: KeyStore, ref: string): KeyRecord {
  let id: string | undefined;
  const aliasMatch = /^(?:arn:aws:kms:[^:]+:\d{12}:)?(alias\/.+)$/.exec(ref);
  if (aliasMatch) {
    const alias = store.aliases.get(aliasMatch[1]!);
    if (!alias)
      throw new KmsError('NotFoundException', `Alias ${store.aliasArn(aliasMatch[1]!)} is not found.`);
    id = alias.targetKeyId;
  } else {
    const keyMatch = /^(?:arn:aws:kms:[^:]+:\d{12}:key\/)?(.+)$/.exec(ref);
    id = keyMatch?.[1];
  }
  if (!id || !UUID_RE.test(id)) {
    if (!aliasMatch) throw new KmsError('NotFoundException', `Invalid keyId '${ref}'`);
  }
  const rec = id ? store.keys.get(id) : undefined;
  if (!rec) throw new KmsError('NotFoundException', `Key '${store.keyArn(id ?? ref)}' does not exist`);
  return rec;
}

function keyOf(ctx: ActionContext, input: Input, field = 'KeyId'): KeyRecord {
  return resolveKey(ctx.store, str(input, field, true));
}

/** Attestation condition keys of a verified document: ImageSha384 (= PCR0) and PCR<N>. */
function conditionContext(recipient: VerifiedRecipient | null): Record<string, string> {
  if (!recipient) return {};
  const out: Record<string, string> = {};
  for (const [i, v] of recipient.pcrs) out[`kms:RecipientAttestation:PCR${i}`] = v.toString('hex');
  const pcr0 = recipient.pcrs.get(0);
  if (pcr0) out['kms:RecipientAttestation:ImageSha384'] = pcr0.toString('hex');
  return out;
}

function authorize(
  ctx: ActionContext,
  key: KeyRecord,
  action: string,
  recipient: VerifiedRecipient | null = null,
): void {
  const decision = evaluatePolicy(
    parsePolicy(key.policy),
    `kms:${action}`,
    conditionContext(recipient),
    ctx.principal,
  );
  if (!decision.allowed) {
    throw new KmsError(
      'AccessDeniedException',
      `User: ${ctx.principal} is not authorized to perform: kms:${action} on resource: ${key.arn} because ${decision.by ? `an explicit deny in the key policy (${decision.by})` : `no resource-based policy allows the kms:${action} action`}`,
    );
  }
}

async function readRecipient(ctx: ActionContext, input: Input): Promise<VerifiedRecipient | null> {
  const r = input.Recipient;
  if (r === undefined || r === null) return null;
  if (typeof r !== 'object') throw new KmsError('SerializationException', 'Recipient must be a structure');
  const rec = r as Input;
  const alg = str(rec, 'KeyEncryptionAlgorithm');
  if (alg !== undefined && alg !== 'RSAES_OAEP_SHA_256') {
    validation(
      `1 validation error detected: Value '${alg}' at 'recipient.keyEncryptionAlgorithm' failed to satisfy constraint: Member must satisfy enum value set: [RSAES_OAEP_SHA_256]`,
    );
  }
  const doc = blob(rec, 'AttestationDocument', 1, 262144);
  return ctx.verifyRecipient(doc);
}

function material(key: KeyRecord): Buffer {
  return Buffer.from(key.material, 'base64');
}

/** The key a ciphertext was made under (checked against the KeyId the caller named, if any). */
function blobKey(ctx: ActionContext, blobBytes: Buffer, keyRef?: string): KeyRecord {
  const id = blobKeyId(blobBytes);
  if (!id) throw new KmsError('InvalidCiphertextException', '');
  const key = ctx.store.keys.get(id);
  if (!key) throw new KmsError('InvalidCiphertextException', '');
  if (keyRef !== undefined && resolveKey(ctx.store, keyRef).keyId !== id) {
    throw new KmsError(
      'IncorrectKeyException',
      'The key ID in the request does not identify a CMK that can perform this operation.',
    );
  }
  return key;
}

function openOrThrow(key: KeyRecord, blobBytes: Buffer, ec: Record<string, string>): Buffer {
  const pt = open(material(key), blobBytes, ec);
  if (!pt) throw new KmsError('InvalidCiphertextException', '');
  return pt;
}

/** Writes the secret as Plaintext-like field, or as CiphertextForRecipient when a Recipient was given. */
function secretOut(
  field: string,
  secret: Buffer,
  recipient: VerifiedRecipient | null,
): Record<string, string> {
  if (!recipient) return { [field]: secret.toString('base64') };
  return { CiphertextForRecipient: buildEnvelope(secret, recipient.publicKey).toString('base64') };
}

const DATA_KEY_SPECS: Record<string, number> = { AES_256: 32, AES_128: 16 };

function dataKeyLength(input: Input): number {
  const spec = str(input, 'KeySpec');
  const n = input.NumberOfBytes;
  if (spec !== undefined && n !== undefined) validation('Please specify either number of bytes or key spec.');
  if (spec !== undefined) {
    const len = Object.hasOwn(DATA_KEY_SPECS, spec) ? DATA_KEY_SPECS[spec] : undefined;
    if (!len)
      validation(
        `1 validation error detected: Value '${spec}' at 'keySpec' failed to satisfy constraint: Member must satisfy enum value set: [AES_256, AES_128]`,
      );
    return len;
  }
  if (n === undefined) validation('Please specify either number of bytes or key spec.');
  if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1024) {
    validation(
      "1 validation error detected: Value at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024",
    );
  }
  return n;
}

const KEY_PAIR_SPECS: Record<string, () => Promise<{ publicKey: Buffer; privateKey: Buffer }>> =
  Object.fromEntries(
    (
      [
        ['RSA_2048', 'rsa', { modulusLength: 2048 }],
        ['RSA_3072', 'rsa', { modulusLength: 3072 }],
        ['RSA_4096', 'rsa', { modulusLength: 4096 }],
        ['ECC_NIST_P256', 'ec', { namedCurve: 'prime256v1' }],
        ['ECC_NIST_P384', 'ec', { namedCurve: 'secp384r1' }],
        ['ECC_NIST_P521', 'ec', { namedCurve: 'secp521r1' }],
        ['ECC_SECG_P256K1', 'ec', { namedCurve: 'secp256k1' }],
      ] as const
    ).map(([name, type, opts]) => [
      name,
      async () => {
        const pair = await generateKeyPairAsync(type as 'rsa', {
          ...(opts as { modulusLength: number }),
          publicKeyEncoding: { type: 'spki', format: 'der' },
          privateKeyEncoding: { type: 'pkcs8', format: 'der' },
        });
        return pair as unknown as { publicKey: Buffer; privateKey: Buffer };
      },
    ]),
  );

function keyMetadata(ctx: ActionContext, key: KeyRecord): Record<string, unknown> {
  return {
    AWSAccountId: ctx.store.accountId,
    KeyId: key.keyId,
    Arn: key.arn,
    CreationDate: key.creationDate,
    Enabled: true,
    Description: key.description,
    KeyUsage: 'ENCRYPT_DECRYPT',
    KeyState: 'Enabled',
    Origin: 'AWS_KMS',
    KeyManager: 'CUSTOMER',
    CustomerMasterKeySpec: 'SYMMETRIC_DEFAULT',
    KeySpec: 'SYMMETRIC_DEFAULT',
    EncryptionAlgorithms: ['SYMMETRIC_DEFAULT'],
    MultiRegion: false,
  };
}

export function defaultPolicy(accountId: string): string {
  return JSON.stringify({
    Version: '2012-10-17',
    Id: 'key-default-1',
    Statement: [
      {
        Sid: 'Enable IAM User Permissions',
        Effect: 'Allow',
        Principal: { AWS: `arn:aws:iam::${accountId}:root` },
        Action: 'kms:*',
        Resource: '*',
      },
    ],
  });
}

export const ACTIONS: Record<string, Handler> = {
  async CreateKey(ctx, input) {
    const spec = str(input, 'KeySpec') ?? str(input, 'CustomerMasterKeySpec') ?? 'SYMMETRIC_DEFAULT';
    const usage = str(input, 'KeyUsage') ?? 'ENCRYPT_DECRYPT';
    if (spec !== 'SYMMETRIC_DEFAULT' || usage !== 'ENCRYPT_DECRYPT') {
      throw new KmsError(
        'UnsupportedOperationException',
        `The KMS emulator creates only SYMMETRIC_DEFAULT ENCRYPT_DECRYPT keys (asked for ${spec} ${usage}).`,
      );
    }
    const policy = str(input, 'Policy') ?? defaultPolicy(ctx.store.accountId);
    parsePolicy(policy);
    const key = ctx.store.createKey(str(input, 'Description') ?? '', policy);
    return { KeyMetadata: keyMetadata(ctx, key) };
  },

  async DescribeKey(ctx, input) {
    const key = keyOf(ctx, input);
    authorize(ctx, key, 'DescribeKey');
    return { KeyMetadata: keyMetadata(ctx, key) };
  },

  async ListKeys(ctx) {
    const keys = [...ctx.store.keys.values()].sort(
      (a, b) => a.creationDate - b.creationDate || (a.keyId < b.keyId ? -1 : 1),
    );
    return { Keys: keys.map((k) => ({ KeyId: k.keyId, KeyArn: k.arn })), Truncated: false };
  },

  async CreateAlias(ctx, input) {
    const name = str(input, 'AliasName', true);
    if (!/^alias\/[a-zA-Z0-9/_-]{1,250}$/.test(name)) {
      validation(
        `1 validation error detected: Value '${name}' at 'aliasName' failed to satisfy constraint: Member must satisfy regular expression pattern: ^alias/[a-zA-Z0-9/_-]+$`,
      );
    }
    if (name.startsWith('alias/aws/'))
      throw new KmsError('NotAuthorizedException', 'Cannot create alias with prefix alias/aws/');
    const key = keyOf(ctx, input, 'TargetKeyId');
    authorize(ctx, key, 'CreateAlias');
    if (ctx.store.aliases.has(name)) {
      throw new KmsError(
        'AlreadyExistsException',
        `An alias with the name ${ctx.store.aliasArn(name)} already exists`,
      );
    }
    ctx.store.putAlias({
      aliasName: name,
      targetKeyId: key.keyId,
      creationDate: Math.floor(Date.now() / 1000),
    });
    return {};
  },

  async ListAliases(ctx, input) {
    const keyRef = str(input, 'KeyId');
    const filter = keyRef === undefined ? undefined : resolveKey(ctx.store, keyRef).keyId;
    const aliases = [...ctx.store.aliases.values()]
      .filter((a) => filter === undefined || a.targetKeyId === filter)
      .map((a) => ({
        AliasName: a.aliasName,
        AliasArn: ctx.store.aliasArn(a.aliasName),
        TargetKeyId: a.targetKeyId,
        CreationDate: a.creationDate,
      }));
    return { Aliases: aliases, Truncated: false };
  },

  async GetKeyPolicy(ctx, input) {
    const key = keyOf(ctx, input);
    authorize(ctx, key, 'GetKeyPolicy');
    return { Policy: key.policy, PolicyName: 'default' };
  },

  async PutKeyPolicy(ctx, input) {
    const key = keyOf(ctx, input);
    const name = str(input, 'PolicyName') ?? 'default';
    if (name !== 'default') throw new KmsError('NotFoundException', `Policy ${name} does not exist`);
    authorize(ctx, key, 'PutKeyPolicy');
    const policy = str(input, 'Policy', true);
    parsePolicy(policy);
    ctx.store.saveKey({ ...key, policy });
    key.policy = policy;
    return {};
  },

  async Encrypt(ctx, input) {
    const key = keyOf(ctx, input);
    checkAlgorithm(input);
    const plaintext = blob(input, 'Plaintext', 1, 4096);
    authorize(ctx, key, 'Encrypt');
    const ct = seal(key.keyId, material(key), plaintext, context(input));
    return {
      CiphertextBlob: ct.toString('base64'),
      KeyId: key.arn,
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    };
  },

  async Decrypt(ctx, input) {
    checkAlgorithm(input);
    const ct = blob(input, 'CiphertextBlob', 1, 6144);
    const ec = context(input);
    const key = blobKey(ctx, ct, str(input, 'KeyId'));
    const recipient = await readRecipient(ctx, input);
    authorize(ctx, key, 'Decrypt', recipient);
    const plaintext = openOrThrow(key, ct, ec);
    return {
      KeyId: key.arn,
      ...secretOut('Plaintext', plaintext, recipient),
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    };
  },

  async ReEncrypt(ctx, input) {
    checkAlgorithm(input, 'SourceEncryptionAlgorithm');
    checkAlgorithm(input, 'DestinationEncryptionAlgorithm');
    const ct = blob(input, 'CiphertextBlob', 1, 6144);
    const sourceEc = context(input, 'SourceEncryptionContext');
    const source = blobKey(ctx, ct, str(input, 'SourceKeyId'));
    const dest = keyOf(ctx, input, 'DestinationKeyId');
    authorize(ctx, source, 'ReEncryptFrom');
    authorize(ctx, dest, 'ReEncryptTo');
    const plaintext = openOrThrow(source, ct, sourceEc);
    const out = seal(dest.keyId, material(dest), plaintext, context(input, 'DestinationEncryptionContext'));
    return {
      CiphertextBlob: out.toString('base64'),
      SourceKeyId: source.arn,
      KeyId: dest.arn,
      SourceEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
      DestinationEncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    };
  },

  async GenerateDataKey(ctx, input) {
    const key = keyOf(ctx, input);
    const len = dataKeyLength(input);
    const recipient = await readRecipient(ctx, input);
    authorize(ctx, key, 'GenerateDataKey', recipient);
    const dataKey = randomBytes(len);
    const ct = seal(key.keyId, material(key), dataKey, context(input));
    return {
      CiphertextBlob: ct.toString('base64'),
      ...secretOut('Plaintext', dataKey, recipient),
      KeyId: key.arn,
    };
  },

  async GenerateDataKeyWithoutPlaintext(ctx, input) {
    const key = keyOf(ctx, input);
    const len = dataKeyLength(input);
    authorize(ctx, key, 'GenerateDataKeyWithoutPlaintext');
    const ct = seal(key.keyId, material(key), randomBytes(len), context(input));
    return { CiphertextBlob: ct.toString('base64'), KeyId: key.arn };
  },

  async GenerateDataKeyPair(ctx, input) {
    const key = keyOf(ctx, input);
    const spec = str(input, 'KeyPairSpec', true);
    const make = Object.hasOwn(KEY_PAIR_SPECS, spec) ? KEY_PAIR_SPECS[spec] : undefined;
    if (!make) {
      validation(
        `1 validation error detected: Value '${spec}' at 'keyPairSpec' failed to satisfy constraint: Member must satisfy enum value set: [${Object.keys(KEY_PAIR_SPECS).join(', ')}]`,
      );
    }
    const recipient = await readRecipient(ctx, input);
    authorize(ctx, key, 'GenerateDataKeyPair', recipient);
    const pair = await make();
    const ct = seal(key.keyId, material(key), pair.privateKey, context(input));
    return {
      PrivateKeyCiphertextBlob: ct.toString('base64'),
      ...secretOut('PrivateKeyPlaintext', pair.privateKey, recipient),
      PublicKey: pair.publicKey.toString('base64'),
      KeyId: key.arn,
      KeyPairSpec: spec,
    };
  },

  async GenerateRandom(ctx, input) {
    const n = input.NumberOfBytes;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1 || n > 1024) {
      validation(
        "1 validation error detected: Value at 'numberOfBytes' failed to satisfy constraint: Member must have value between 1 and 1024",
      );
    }
    const recipient = await readRecipient(ctx, input);
    return secretOut('Plaintext', randomBytes(n), recipient);
  },
};
