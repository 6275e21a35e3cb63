// The emulator's check of a client's SigV4 header signature, written from AWS's description of the
// algorithm (Signature Version 4: "Create a canonical request", "Create a string to sign", "Calculate the
// signature") rather than on @smithy/signature-v4. The emulator stands in for KMS in every test of the
// proxy, and the proxy signs with smithy: a verifier on the same library would agree with the signer on
// any mistake they share and pass tests that real KMS fails. One such mistake is known: smithy 5.x
// builds the canonical query in a plain object, so a parameter named `__proto__` comes out as
// `[object Object]` (docs/decisions.md, "SigV4 verifier in the emulator").
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { Scope } from '../kms/sigv4.ts';

export class SignatureError extends Error {
  constructor(
    /** KMS error type: IncompleteSignatureException | InvalidSignatureException | UnrecognizedClientException
     *  | MissingAuthenticationTokenException | MalformedQueryString */
    readonly type: string,
    message: string,
  ) {
    super(message);
    this.name = 'SignatureError';
  }
}

export interface VerifyInput {
  method: string;
  /** The request target as received (path and query, still percent-encoded). */
  path: string;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
  /** Returns the secret (and the session token it was issued with, if any) for an access key id. */
  lookup: (accessKeyId: string) => { secretAccessKey: string; sessionToken?: string } | undefined;
  now?: Date;
  maxSkewMs?: number;
  /** S3's canonical URI: the path exactly as sent (S3 neither normalises nor encodes it again). */
  s3Path?: boolean;
}

const AUTH_FULL_RE =
  /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request\s*,\s*SignedHeaders=([a-z0-9;\-_.]+)\s*,\s*Signature=([0-9a-f]{64})\s*$/;

function header(h: VerifyInput['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
}

/** RFC 3986 percent-encoding as SigV4 wants it: everything but A-Z a-z 0-9 - _ . ~, upper-case hex. */
export function uriEncode(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The canonical query string of a raw query (the part after `?`, as sent): each name and value
 * percent-decoded, then encoded again with uriEncode; a name without `=` has the empty value; sorted by
 * encoded name, then by encoded value (not by the whole `name=value`: `a-b` must follow `a`).
 * Built as a list of pairs, never as an object keyed by name, so no name is special.
 */
export function canonicalQuery(rawQuery: string): string {
  const pairs: Array<[string, string]> = [];
  for (const piece of rawQuery.split('&')) {
    if (piece === '') continue;
    const eq = piece.indexOf('=');
    const name = eq === -1 ? piece : piece.slice(0, eq);
    const value = eq === -1 ? '' : piece.slice(eq + 1);
    let decoded: [string, string];
    try {
      decoded = [decodeURIComponent(name), decodeURIComponent(value)];
    } catch {
      throw new SignatureError('MalformedQueryString', 'The query string has a malformed percent-encoding.');
    }
    pairs.push([uriEncode(decoded[0]), uriEncode(decoded[1])]);
  }
  const byCodePoint = (a: string, b: string) => (a < b ? -1 : a > b ? 1 : 0);
  pairs.sort((a, b) => byCodePoint(a[0], b[0]) || byCodePoint(a[1], b[1]));
  return pairs.map(([n, v]) => `${n}=${v}`).join('&');
}

/** The canonical URI of a raw path (non-S3 services): dot segments and empty segments removed, then
 *  every segment encoded once more (the path on the wire is already encoded once). */
export function canonicalUri(rawPath: string): string {
  const segments: string[] = [];
  for (const s of rawPath.split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') segments.pop();
    else segments.push(s);
  }
  const trailing = segments.length > 0 && rawPath.endsWith('/') ? '/' : '';
  return `/${segments.map(uriEncode).join('/')}${trailing}`;
}

/** The canonical request: method, URI, query, headers, signed header list, payload hash. */
export function canonicalRequest(
  method: string,
  target: string,
  headers: Record<string, string>,
  signedHeaders: string[],
  payloadHash: string,
  s3Path = false,
): string {
  const q = target.indexOf('?');
  const rawPath = q === -1 ? target : target.slice(0, q);
  const rawQuery = q === -1 ? '' : target.slice(q + 1);
  const names = [...signedHeaders].sort();
  const lines = names.map((n) => `${n}:${(headers[n] ?? '').trim().replace(/\s+/g, ' ')}\n`);
  return [
    method,
    s3Path ? rawPath : canonicalUri(rawPath),
    canonicalQuery(rawQuery),
    lines.join(''),
    names.join(';'),
    payloadHash,
  ].join('\n');
}

function hmac(key: Buffer | string, data: string): Buffer {
  return createHmac('sha256', key).update(data, 'utf8').digest();
}

/** Verifies a header-signed SigV4 request (what every SDK sends to KMS). Returns the scope. */
export async function verifySignature(input: VerifyInput): Promise<Scope> {
  const auth = header(input.headers, 'authorization');
  if (auth === undefined) {
    throw new SignatureError('MissingAuthenticationTokenException', 'Missing Authentication Token');
  }
  const m = AUTH_FULL_RE.exec(auth.trim());
  if (!m) {
    throw new SignatureError(
      'IncompleteSignatureException',
      'Authorization header requires Credential, SignedHeaders and Signature parameters (AWS4-HMAC-SHA256)',
    );
  }
  const [, accessKeyId, date, region, service, signedList, signature] = m as unknown as string[];
  const creds = input.lookup(accessKeyId!);
  if (!creds) {
    throw new SignatureError(
      'UnrecognizedClientException',
      'The security token included in the request is invalid.',
    );
  }
  const amzDate = header(input.headers, 'x-amz-date');
  if (!amzDate || !/^\d{8}T\d{6}Z$/.test(amzDate) || amzDate.slice(0, 8) !== date) {
    throw new SignatureError(
      'IncompleteSignatureException',
      'X-Amz-Date is missing or does not match the credential scope',
    );
  }
  const signingDate = new Date(
    `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`,
  );
  // The pattern alone lets through month 13 or hour 99: an Invalid Date would pass the skew check.
  if (Number.isNaN(signingDate.getTime())) {
    throw new SignatureError('IncompleteSignatureException', `X-Amz-Date ${amzDate} is not a valid time`);
  }
  const now = input.now ?? new Date();
  const skew = input.maxSkewMs ?? 15 * 60_000;
  if (Math.abs(now.getTime() - signingDate.getTime()) > skew) {
    throw new SignatureError(
      'InvalidSignatureException',
      `Signature expired: ${amzDate} is now earlier or later than the allowed clock skew of the server time`,
    );
  }
  const token = header(input.headers, 'x-amz-security-token');
  if (creds.sessionToken !== undefined && token !== creds.sessionToken) {
    throw new SignatureError(
      'UnrecognizedClientException',
      'The security token included in the request is invalid.',
    );
  }
  const payloadHash = createHash('sha256').update(input.body).digest('hex');
  // A signed payload hash must be the body's: otherwise the signature would cover another body.
  const claimed = header(input.headers, 'x-amz-content-sha256');
  if (claimed !== undefined && claimed !== payloadHash) {
    throw new SignatureError(
      'InvalidSignatureException',
      'The provided x-amz-content-sha256 does not match the request body.',
    );
  }
  const names = signedList!.split(';');
  if (!names.includes('host'))
    throw new SignatureError('InvalidSignatureException', "'Host' must be a signed header");
  const headers: Record<string, string> = Object.create(null);
  for (const name of names) {
    const v = header(input.headers, name);
    if (v === undefined)
      throw new SignatureError('InvalidSignatureException', `signed header '${name}' is missing`);
    headers[name] = v;
  }
  // An absolute-form target (`POST http://host/ HTTP/1.1`) is signed as its path and query.
  const target = input.path.replace(/^[a-z][a-z0-9+.-]*:\/\/[^/?]*/i, '') || '/';
  const canonical = canonicalRequest(input.method, target, headers, names, payloadHash, input.s3Path);
  const scope = `${date}/${region}/${service}/aws4_request`;
  const stringToSign = [
    'AWS4-HMAC-SHA256',
    amzDate,
    scope,
    createHash('sha256').update(canonical, 'utf8').digest('hex'),
  ].join('\n');
  let key = hmac(`AWS4${creds.secretAccessKey}`, date!);
  for (const part of [region!, service!, 'aws4_request']) key = hmac(key, part);
  const expected = hmac(key, stringToSign);
  const given = Buffer.from(signature!, 'hex');
  if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
    throw new SignatureError(
      'InvalidSignatureException',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
    );
  }
  return { accessKeyId: accessKeyId!, date: date!, region: region!, service: service! };
}
