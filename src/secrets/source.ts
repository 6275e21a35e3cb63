// Where a boot-time secret's KMS ciphertext comes from: inline in cloister.yaml, a file in the image, or
// fetched at start (S3 object, SSM parameter, Secrets Manager secret) through the egress proxy. Only
// ciphertexts travel here: the plaintext exists only after KMS answered the attested Decrypt.
import { readFile } from 'node:fs/promises';
import { MAX_CIPHERTEXT_BYTES } from '../config/secrets.ts';
import type { SecretSource, SecretSpec } from '../config/types.ts';
import { CloisterError, isSecretError, secretError } from '../errors.ts';
import { EgressError } from '../kms/egress.ts';
import type { UpstreamReply } from '../kms/upstream.ts';
import { type AwsAccess, awsErrorCode } from './aws.ts';

const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Where the source is, for messages: `s3://bucket/key`, `ssm:/name`... */
export function describeSource(s: SecretSource): string {
  switch (s.kind) {
    case 'inline':
      return 'inline';
    case 'file':
      return `file ${s.path}`;
    case 's3':
      return `s3://${s.bucket}/${s.key}`;
    case 'ssm':
      return `ssm parameter ${s.name}`;
    case 'secretsmanager':
      return `secretsmanager secret ${s.id}`;
  }
}

function fail(spec: SecretSpec, reason: string, what: string, cause?: unknown): never {
  throw secretError(
    'source',
    spec.name,
    reason,
    `secret ${spec.name}: cannot read its ciphertext (${describeSource(spec.source)}): ${what}`,
    cause === undefined ? undefined : { cause },
  );
}

/** base64 text (whitespace ignored) -> bytes; a SecretError when it is not base64. */
function fromBase64(spec: SecretSpec, text: string): Buffer {
  const compact = text.replace(/\s+/g, '');
  if (compact === '' || !BASE64_RE.test(compact)) fail(spec, 'CLO_ERR_SECRET_SOURCE', 'not base64 text');
  return Buffer.from(compact, 'base64');
}

/** A failed fetch: the reason is the egress proxy's code or AWS's error name. */
function fetchFailed(spec: SecretSpec, err: unknown): never {
  if (isSecretError(err)) throw err;
  fail(spec, failureCode(err), err instanceof Error ? err.message : String(err), err);
}

/** The code of a failed call: the egress proxy's refusal (in the cause chain) first, else cloister's code. */
export function failureCode(err: unknown): string {
  for (let e: unknown = err; e instanceof Error; e = e.cause) {
    if (e instanceof EgressError && e.refusal) return e.refusal;
  }
  return err instanceof CloisterError ? err.code : 'CLO_ERR_INTERNAL';
}

/** A fetch's 200 reply; a failure to reach the service or its refusal as SecretSourceError. */
async function fetched(spec: SecretSpec, call: () => Promise<UpstreamReply>): Promise<UpstreamReply> {
  let reply: UpstreamReply;
  try {
    reply = await call();
  } catch (err) {
    return fetchFailed(spec, err);
  }
  if (reply.status !== 200) {
    const { code, message } = awsErrorCode(reply);
    fail(spec, code, `${code}${message ? `: ${message}` : ''} (HTTP ${reply.status})`);
  }
  return reply;
}

function jsonBody(spec: SecretSpec, reply: UpstreamReply): Record<string, unknown> {
  try {
    const j = JSON.parse(reply.body.toString('utf8')) as unknown;
    if (j && typeof j === 'object' && !Array.isArray(j)) return j as Record<string, unknown>;
  } catch {}
  return fail(spec, 'CLO_ERR_SECRET_SOURCE', 'the reply is not a JSON object');
}

/** The ciphertext bytes of `spec`, from wherever its source says. `region`: the secret's region. */
export async function readCiphertext(spec: SecretSpec, region: string, aws: AwsAccess): Promise<Buffer> {
  const s = spec.source;
  let bytes: Buffer;
  switch (s.kind) {
    case 'inline':
      bytes = Buffer.from(s.ciphertext, 'base64');
      break;
    case 'file': {
      let raw: Buffer;
      try {
        raw = await readFile(s.path);
      } catch (err) {
        return fail(
          spec,
          (err as NodeJS.ErrnoException).code ?? 'CLO_ERR_SECRET_SOURCE',
          (err as Error).message,
          err,
        );
      }
      bytes = s.format === 'base64' ? fromBase64(spec, raw.toString('latin1')) : raw;
      break;
    }
    case 's3': {
      const reply = await fetched(spec, () => aws.s3GetObject(s.region ?? region, s));
      bytes = s.format === 'base64' ? fromBase64(spec, reply.body.toString('latin1')) : reply.body;
      break;
    }
    case 'ssm': {
      // WithDecryption false: a SecureString would come back still encrypted under SSM's own key; the
      // value cloister wants is a KMS ciphertext only this enclave can open, stored as a String.
      const input = { Name: s.name, WithDecryption: false };
      const reply = await fetched(spec, () =>
        aws.jsonCall('ssm', s.region ?? region, 'AmazonSSM.GetParameter', input, s.endpoint),
      );
      const p = jsonBody(spec, reply).Parameter as { Value?: unknown } | undefined;
      if (typeof p?.Value !== 'string')
        fail(spec, 'CLO_ERR_SECRET_SOURCE', 'the reply has no Parameter.Value');
      bytes = fromBase64(spec, p.Value);
      break;
    }
    case 'secretsmanager': {
      const input = { SecretId: s.id, ...(s.version_stage ? { VersionStage: s.version_stage } : {}) };
      const reply = await fetched(spec, () =>
        aws.jsonCall(
          'secretsmanager',
          s.region ?? region,
          'secretsmanager.GetSecretValue',
          input,
          s.endpoint,
        ),
      );
      const j = jsonBody(spec, reply);
      // SecretBinary is the ciphertext itself (base64 on the wire); SecretString its base64 text.
      if (typeof j.SecretBinary === 'string') bytes = fromBase64(spec, j.SecretBinary);
      else if (typeof j.SecretString === 'string') bytes = fromBase64(spec, j.SecretString);
      else return fail(spec, 'CLO_ERR_SECRET_SOURCE', 'the reply has neither SecretBinary nor SecretString');
      break;
    }
  }
  if (bytes.length === 0 || bytes.length > MAX_CIPHERTEXT_BYTES) {
    fail(
      spec,
      'CLO_ERR_SECRET_SOURCE',
      `${bytes.length} bytes is not a KMS ciphertext (1..${MAX_CIPHERTEXT_BYTES})`,
    );
  }
  return bytes;
}
