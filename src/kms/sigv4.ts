// SigV4 for the KMS proxy, on @smithy/signature-v4 (the AWS SDK's own signer).
//  - readScope: the region/service the app signed for (Authorization header or presigned query);
//    the proxy never trusts the app's signature, it only routes by its scope
//    (docs/reference/enclaver.md, "KMS proxy: per request").
//  - signKmsRequest: re-sign with the proxy's own credentials (the body changed, so it must).
// The emulator checks signatures with its own implementation (kms-emulator/sigv4-verify.ts), so that
// the signer's mistakes cannot hide behind a verifier that shares them.
import { createHash, createHmac } from 'node:crypto';
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

/** A KMS JSON 1.1 call: always `POST /` without a query (the only requests the proxy signs). */
export interface SignableRequest {
  /** Authority as sent in the Host header (host or host:port). */
  host: string;
  headers: Record<string, string>;
  body: Uint8Array | string;
}

/** One signer per region: SignatureV4 pulls credentials from the provider on every sign. */
export function createKmsSigner(
  region: string,
  credentials: AwsCredentialIdentity | AwsCredentialIdentityProvider,
): SignatureV4 {
  return createSigner(region, credentials, AWS_JSON_SERVICE('kms'));
}

/** How a service wants its requests signed. */
export interface SigningService {
  /** The SigV4 service name: kms, ssm, secretsmanager, s3. */
  name: string;
  /** Send x-amz-content-sha256 (S3 requires it; the JSON services do not). */
  applyChecksum: boolean;
  /** Escape the path once more when canonicalising (every service but S3). */
  uriEscapePath: boolean;
}

/** A JSON 1.1 service (KMS, SSM, Secrets Manager): POST / signed without a payload-hash header. */
export const AWS_JSON_SERVICE = (name: string): SigningService => ({
  name,
  applyChecksum: false,
  uriEscapePath: true,
});

/** S3: the payload hash in x-amz-content-sha256, the path canonicalised as sent. */
export const S3_SERVICE: SigningService = { name: 's3', applyChecksum: true, uriEscapePath: false };

export function createSigner(
  region: string,
  credentials: AwsCredentialIdentity | AwsCredentialIdentityProvider,
  service: SigningService,
): SignatureV4 {
  return new SignatureV4({
    credentials,
    region,
    service: service.name,
    sha256: NodeSha256,
    applyChecksum: service.applyChecksum,
    uriEscapePath: service.uriEscapePath,
  });
}

/** Signs and returns the headers to send (input headers + host, x-amz-date, token, authorization). */
export async function signKmsRequest(
  signer: SignatureV4,
  req: SignableRequest,
  signingDate?: Date,
): Promise<Record<string, string>> {
  return signRequest(signer, { ...req, method: 'POST', path: '/' }, signingDate);
}

/**
 * Any request without a query (`path` already percent-encoded as it goes on the wire): S3's GetObject
 * (GET /bucket/key) as well as the JSON calls.
 */
export async function signRequest(
  signer: SignatureV4,
  req: SignableRequest & { method: string; path: string },
  signingDate?: Date,
): Promise<Record<string, string>> {
  const request = new HttpRequest({
    method: req.method,
    protocol: 'https:',
    hostname: req.host,
    path: req.path,
    headers: { ...req.headers, host: req.host },
    body: req.body,
  });
  const signed = await signer.sign(request, signingDate ? { signingDate } : {});
  return signed.headers;
}
