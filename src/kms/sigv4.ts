// SigV4 for the KMS proxy and the emulator, on @smithy/signature-v4 (the AWS SDK's own signer).
//  - readScope: the region/service the app signed for (Authorization header or presigned query);
//    the proxy never trusts the app's signature, it only routes by its scope (enclaver-compat §12.2).
//  - signKmsRequest: re-sign with the proxy's own credentials (the body changed, so it must).
//  - verifySignature: the emulator's check of a client's header signature.
import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import type {
  AwsCredentialIdentity,
  AwsCredentialIdentityProvider,
  Checksum,
  SourceData,
} from '@smithy/types';

/** Node's crypto behind smithy's Checksum interface (HMAC when constructed with a secret). */
export class NodeSha256 implements Checksum {
  private hash;
  constructor(private readonly secret?: SourceData) {
    this.hash = this.make();
  }
  private make() {
    return this.secret === undefined ? createHash('sha256') : createHmac('sha256', toBuffer(this.secret));
  }
  update(data: Uint8Array): void {
    this.hash.update(data);
  }
  async digest(): Promise<Uint8Array> {
    return new Uint8Array(this.hash.digest());
  }
  reset(): void {
    this.hash = this.make();
  }
}

function toBuffer(data: SourceData): Buffer {
  if (typeof data === 'string') return Buffer.from(data, 'utf8');
  if (ArrayBuffer.isView(data)) return Buffer.from(data.buffer, data.byteOffset, data.byteLength);
  return Buffer.from(data);
}

export interface Scope {
  accessKeyId: string;
  date: string;
  region: string;
  service: string;
}

export class ScopeError extends Error {
  override name = 'ScopeError';
}

const HEADER_RE =
  /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request\s*(?:,|$)/;
const QUERY_RE = /^([^/]+)\/(\d{8})\/([^/]+)\/([^/]+)\/aws4_request$/;

/** The credential scope of a request: from `Authorization`, else the `X-Amz-Credential` query parameter. */
export function readScope(authorization: string | undefined, search: URLSearchParams): Scope {
  if (authorization !== undefined) {
    const m = HEADER_RE.exec(authorization.trim());
    if (!m) throw new ScopeError('the Authorization header is not an AWS SigV4 (AWS4-HMAC-SHA256) signature');
    return { accessKeyId: m[1]!, date: m[2]!, region: m[3]!, service: m[4]! };
  }
  for (const [name, value] of search) {
    if (name.toLowerCase() !== 'x-amz-credential') continue;
    const m = QUERY_RE.exec(value);
    if (!m) throw new ScopeError('the X-Amz-Credential query parameter is malformed');
    return { accessKeyId: m[1]!, date: m[2]!, region: m[3]!, service: m[4]! };
  }
  throw new ScopeError('no AWS SigV4 signature in the request (no Authorization header or X-Amz-Credential)');
}

export interface SignableRequest {
  /** Authority as sent in the Host header (host or host:port). */
  host: string;
  path: string;
  query: Record<string, string | string[]>;
  headers: Record<string, string>;
  body: Uint8Array | string;
}

/** One signer per region: SignatureV4 pulls credentials from the provider on every sign. */
export function createKmsSigner(
  region: string,
  credentials: AwsCredentialIdentity | AwsCredentialIdentityProvider,
): SignatureV4 {
  return new SignatureV4({ credentials, region, service: 'kms', sha256: NodeSha256, applyChecksum: false });
}

/** Signs and returns the headers to send (input headers + host, x-amz-date, token, authorization). */
export async function signKmsRequest(
  signer: SignatureV4,
  req: SignableRequest,
  signingDate?: Date,
): Promise<Record<string, string>> {
  const request = new HttpRequest({
    method: 'POST',
    protocol: 'https:',
    hostname: req.host,
    path: req.path,
    query: req.query,
    headers: { ...req.headers, host: req.host },
    body: req.body,
  });
  const signed = await signer.sign(request, signingDate ? { signingDate } : {});
  return signed.headers;
}

export class SignatureError extends Error {
  constructor(
    /** KMS error type: IncompleteSignatureException | InvalidSignatureException | UnrecognizedClientException */
    readonly type: string,
    message: string,
  ) {
    super(message);
    this.name = 'SignatureError';
  }
}

export interface VerifyInput {
  method: string;
  path: string;
  /** Lower-case header names. */
  headers: Record<string, string | string[] | undefined>;
  body: Uint8Array;
  /** Returns the secret (and the session token it was issued with, if any) for an access key id. */
  lookup: (accessKeyId: string) => { secretAccessKey: string; sessionToken?: string } | undefined;
  now?: Date;
  maxSkewMs?: number;
}

const AUTH_FULL_RE =
  /^AWS4-HMAC-SHA256\s+Credential=([^/,\s]+)\/(\d{8})\/([^/,\s]+)\/([^/,\s]+)\/aws4_request\s*,\s*SignedHeaders=([a-z0-9;\-_.]+)\s*,\s*Signature=([0-9a-f]{64})\s*$/;

function header(h: VerifyInput['headers'], name: string): string | undefined {
  const v = h[name];
  return Array.isArray(v) ? v.join(',') : v;
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
  // A signed payload hash must be the body's: otherwise the signature would cover another body.
  const claimed = header(input.headers, 'x-amz-content-sha256');
  if (claimed !== undefined && claimed !== createHash('sha256').update(input.body).digest('hex')) {
    throw new SignatureError(
      'InvalidSignatureException',
      'The provided x-amz-content-sha256 does not match the request body.',
    );
  }
  const names = signedList!.split(';');
  if (!names.includes('host'))
    throw new SignatureError('InvalidSignatureException', "'Host' must be a signed header");
  const headers: Record<string, string> = {};
  for (const name of names) {
    const v = header(input.headers, name);
    if (v === undefined)
      throw new SignatureError('InvalidSignatureException', `signed header '${name}' is missing`);
    headers[name] = v;
  }
  const url = new URL(input.path, 'http://x');
  const query: Record<string, string | string[]> = {};
  for (const [k, v] of url.searchParams) {
    const prev = query[k];
    query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
  }
  const signer = new SignatureV4({
    credentials: { accessKeyId: accessKeyId!, secretAccessKey: creds.secretAccessKey, sessionToken: token },
    region: region!,
    service: service!,
    sha256: NodeSha256,
    applyChecksum: false,
  });
  const request = new HttpRequest({
    method: input.method,
    protocol: 'https:',
    hostname: headers.host!,
    path: url.pathname,
    query,
    headers,
    body: input.body,
  });
  const signed = await signer.sign(request, { signingDate, signableHeaders: new Set(names) });
  const expected = /Signature=([0-9a-f]{64})/.exec(signed.headers.authorization ?? '')?.[1] ?? '';
  const a = Buffer.from(expected, 'hex');
  const b = Buffer.from(signature!, 'hex');
  if (a.length !== b.length || !timingSafeEqual(a, b)) {
    throw new SignatureError(
      'InvalidSignatureException',
      'The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.',
    );
  }
  return { accessKeyId: accessKeyId!, date: date!, region: region!, service: service! };
}
