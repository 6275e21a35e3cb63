// What the app asked the KMS proxy: one HTTP request read into a KMS call, or a CloisterError saying why
// it is not one (its code picks the status and the KMS `__type`, src/errors.ts). Pure (no I/O, no clock), so every rule is table-tested (test/unit/kms/request.test.ts).
//
// The proxy signs only what it understands: a KMS JSON 1.1 call is `POST /` with X-Amz-Target
// `TrentService.<Action>` and no query (the SDKs never send one; the SigV4 presigning parameters are
// taken as the signature they are and dropped). Anything else is refused, never re-signed with the
// enclave's credentials: a Decrypt sent with PUT or to `/x` would otherwise reach KMS without the
// Recipient the proxy adds, signed by the enclave's role.
import {
  BadRequestError,
  KmsSerializationError,
  KmsSignatureIncompleteError,
  KmsSignatureInvalidError,
  KmsUnknownOperationError,
  MethodNotAllowedError,
  NotFoundError,
} from '../errors.ts';
import { readScope, type ScopeError } from './sigv4.ts';

/** An action the proxy attests, and the response field its secret goes in. */
export interface AttestedAction {
  action: string;
  field: string;
}

/** Attested actions (lower-cased) and the response field that carries their secret. */
const ATTESTED: Record<string, AttestedAction> = {
  decrypt: { action: 'Decrypt', field: 'Plaintext' },
  generatedatakey: { action: 'GenerateDataKey', field: 'Plaintext' },
  generatedatakeypair: { action: 'GenerateDataKeyPair', field: 'PrivateKeyPlaintext' },
  generaterandom: { action: 'GenerateRandom', field: 'Plaintext' },
  derivesharedsecret: { action: 'DeriveSharedSecret', field: 'SharedSecret' },
};

/** AWS region names (us-east-1, us-gov-west-1, eu-isoe-west-1...) and the names people give local ones. */
const REGION_RE = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const KMS_OPERATIONS = new Set(
  (
    'CancelKeyDeletion ConnectCustomKeyStore CreateAlias CreateCustomKeyStore CreateGrant CreateKey Decrypt ' +
    'DeleteAlias DeleteCustomKeyStore DeleteImportedKeyMaterial DeriveSharedSecret DescribeCustomKeyStores ' +
    'DescribeKey DisableKey DisableKeyRotation DisconnectCustomKeyStore EnableKey EnableKeyRotation Encrypt ' +
    'GenerateDataKey GenerateDataKeyPair GenerateDataKeyPairWithoutPlaintext GenerateDataKeyWithoutPlaintext ' +
    'GenerateMac GenerateRandom GetKeyPolicy GetKeyRotationStatus GetParametersForImport GetPublicKey ' +
    'ImportKeyMaterial ListAliases ListGrants ListKeyPolicies ListKeyRotations ListKeys ListResourceTags ' +
    'ListRetirableGrants PutKeyPolicy ReEncrypt ReplicateKey RetireGrant RevokeGrant RotateKeyOnDemand ' +
    'ScheduleKeyDeletion Sign TagResource UntagResource UpdateAlias UpdateCustomKeyStore UpdateKeyDescription ' +
    'UpdatePrimaryRegion Verify VerifyMac'
  ).split(' '),
);
/** Query parameters of a presigned SigV4 request: the app's signature, which the proxy replaces. */
const PRESIGN_PARAMS = new Set([
  'x-amz-algorithm',
  'x-amz-credential',
  'x-amz-date',
  'x-amz-expires',
  'x-amz-signedheaders',
  'x-amz-signature',
  'x-amz-security-token',
]);
const TARGET_RE = /^trentservice\.(\w{1,64})$/i;

/** Deepest nesting accepted in a request body that the proxy parses and re-serializes. */
export const MAX_JSON_DEPTH = 32;

export interface KmsRequest {
  method: string | undefined;
  /** The request target as received (origin form, or absolute form). */
  url: string | undefined;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

export interface KmsCall {
  /** The region the app signed for: picks the KMS endpoint and the proxy's signing scope. */
  region: string;
  /** X-Amz-Target as sent (forwarded as is). */
  target: string;
  /** Set for the actions the proxy attests. */
  attested?: AttestedAction;
  /** The parsed body when the proxy adds a Recipient to it; null when the body is forwarded unchanged
   *  (not an attested action, or the app brought its own Recipient). */
  input: Record<string, unknown> | null;
}

/** The metrics label of a request: one of KMS's own operation names, else 'other' ('unknown' without
 *  a target), so a client cannot grow the label set without bound. */
export function operationLabel(target: string | string[] | undefined): string {
  if (typeof target !== 'string') return 'unknown';
  const named = TARGET_RE.exec(target)?.[1];
  if (!named) return 'other';
  const attested = Object.hasOwn(ATTESTED, named.toLowerCase()) ? ATTESTED[named.toLowerCase()] : undefined;
  return attested?.action ?? (KMS_OPERATIONS.has(named) ? named : 'other');
}

/** Reads one request into a KMS call, or throws the CloisterError to answer it with. */
export function parseKmsRequest(req: KmsRequest): KmsCall {
  let url: URL;
  try {
    url = new URL(req.url ?? '/', 'http://proxy');
  } catch {
    throw new BadRequestError('the request target is not a valid URL');
  }
  if (req.method !== 'POST') {
    throw new MethodNotAllowedError(
      `${String(req.method).slice(0, 32)} is not a KMS call (KMS JSON 1.1 calls are POST /)`,
    );
  }
  if (url.pathname !== '/') {
    throw new NotFoundError(
      `${url.pathname.slice(0, 64)} is not a KMS endpoint (KMS JSON 1.1 calls are POST /)`,
    );
  }
  // Only the presigning parameters may be in the query (they are the app's signature, which the proxy
  // replaces). Anything else the proxy would have to sign, and KMS's JSON API has no query parameters.
  for (const name of url.searchParams.keys()) {
    if (!PRESIGN_PARAMS.has(name.toLowerCase())) {
      throw new BadRequestError(
        `query parameter '${name.slice(0, 64)}' is not part of a KMS call (KMS JSON 1.1 takes its input in the body)`,
      );
    }
  }
  const authorization = req.headers.authorization;
  let scope: ReturnType<typeof readScope>;
  try {
    scope = readScope(typeof authorization === 'string' ? authorization : undefined, url.searchParams);
  } catch (err) {
    throw new KmsSignatureIncompleteError((err as ScopeError).message, { cause: err });
  }
  // The region becomes part of the KMS host name (kms.<region>.amazonaws.com): anything but a region
  // name could turn it into another authority ("x@evil:443#") that receives our signed request.
  if (!REGION_RE.test(scope.region)) {
    throw new KmsSignatureInvalidError(
      `the signature's credential scope names an invalid region '${scope.region.slice(0, 64)}'`,
    );
  }
  if (scope.service !== 'kms') {
    throw new KmsSignatureInvalidError(`request signed for service '${scope.service}', not 'kms'`);
  }
  const target = req.headers['x-amz-target'];
  if (typeof target !== 'string' || !/^[\x21-\x7e]+$/.test(target)) {
    throw new KmsUnknownOperationError('X-Amz-Target header missing or malformed');
  }
  // Matched case-insensitively, as odyn does; the output field follows the action, whatever its case.
  const named = TARGET_RE.exec(target)?.[1]?.toLowerCase();
  const attested = named && Object.hasOwn(ATTESTED, named) ? ATTESTED[named] : undefined;
  if (!attested) return { region: scope.region, target, input: null };
  const input = parseInput(req.body);
  // The app brought its own Recipient: it will decrypt the reply itself, so pass it through as is.
  const own = input.Recipient !== undefined && input.Recipient !== null;
  return { region: scope.region, target, attested, input: own ? null : input };
}

function parseInput(body: Buffer): Record<string, unknown> {
  const text = body.toString('utf8') || '{}';
  // KMS inputs are a few levels deep (EncryptionContext is the deepest). Refuse deep nesting up front:
  // whether JSON.stringify can write such a body back depends on the V8 version.
  if (exceedsJsonDepth(text, MAX_JSON_DEPTH)) {
    throw new KmsSerializationError(
      `the request body is nested too deeply (more than ${MAX_JSON_DEPTH} levels)`,
    );
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new KmsSerializationError('the request body is not a JSON object');
  }
  return parsed as Record<string, unknown>;
}

/** True when `text` opens more than `max` arrays/objects at once (brackets inside strings do not count). */
export function exceedsJsonDepth(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c)
        i++; // backslash: skip the escaped character
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) return true;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return false;
}
