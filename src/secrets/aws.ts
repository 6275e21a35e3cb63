// The AWS calls of the boot-time secrets, all on the KMS proxy's client (src/kms/upstream.ts): signed
// with the enclave's own credentials (the KMS proxy's credential chain: environment, container, IMDS),
// sent through the egress proxy, so egress.allow decides which endpoints can be reached at all.
//   S3 GetObject            GET /<key> on <bucket>.s3.<region>.amazonaws.com (path style on an endpoint override)
//   SSM GetParameter        POST / AmazonSSM.GetParameter, WithDecryption false (the value is a KMS ciphertext)
//   Secrets Manager         POST / secretsmanager.GetSecretValue
//   KMS Decrypt             POST / TrentService.Decrypt with a Recipient (src/secrets/decrypt.ts)
import type { CredentialChain } from '../kms/credentials.ts';
import type { EgressProxy } from '../kms/egress.ts';
import { AWS_JSON_SERVICE, S3_SERVICE, type SigningService } from '../kms/sigv4.ts';
import { KmsUpstream, kmsEndpoint, type UpstreamReply } from '../kms/upstream.ts';

export interface AwsAccessOptions {
  egress: EgressProxy | null;
  credentials: CredentialChain;
  /** Per-call timeout (kms.upstream_timeout_ms). */
  timeoutMs: number;
  /** kms_proxy.endpoints: region -> KMS endpoint override. */
  kmsEndpoints: Record<string, string>;
}

/** An endpoint override: a full URL, or an authority meaning https (as kms_proxy.endpoints). */
function endpointUrl(override: string): URL {
  return new URL(override.includes('://') ? override : `https://${override}`);
}

/** The upstreams (each with its pooled tunnels) the secrets need, made once per endpoint. */
export class AwsAccess {
  private readonly upstreams = new Map<string, KmsUpstream>();

  constructor(private readonly opts: AwsAccessOptions) {}

  /** KMS of `region`: kms_proxy.endpoints[region], else kms.<region>.amazonaws.com. */
  kms(): KmsUpstream {
    return this.upstream('kms', null, () => null);
  }

  private upstream(
    key: string,
    service: { signing: SigningService; label: string } | null,
    endpoint: (region: string) => URL | null,
  ): KmsUpstream {
    let u = this.upstreams.get(key);
    if (!u) {
      u = new KmsUpstream({
        endpoints: this.opts.kmsEndpoints,
        egress: this.opts.egress,
        timeoutMs: this.opts.timeoutMs,
        credentials: () => this.opts.credentials.get(),
        ...(service
          ? {
              service: {
                ...service,
                endpoint: (region: string) => endpoint(region) ?? kmsEndpoint({}, region),
              },
            }
          : {}),
      });
      this.upstreams.set(key, u);
    }
    return u;
  }

  /** S3 GetObject; the object's bytes. */
  async s3GetObject(
    region: string,
    o: { bucket: string; key: string; endpoint?: string },
  ): Promise<UpstreamReply> {
    // Virtual-hosted style (AWS's default) unless the bucket name has dots (its TLS certificate would
    // not match) or an endpoint override is given (emulators serve path style).
    const pathStyle = o.endpoint !== undefined || o.bucket.includes('.');
    const base = o.endpoint
      ? endpointUrl(o.endpoint)
      : new URL(
          pathStyle ? `https://s3.${region}.amazonaws.com` : `https://${o.bucket}.s3.${region}.amazonaws.com`,
        );
    const keyPath = o.key.split('/').map(encodeS3Segment).join('/');
    const path = pathStyle ? `/${encodeS3Segment(o.bucket)}/${keyPath}` : `/${keyPath}`;
    const s3 = this.upstream(`s3|${base.origin}|${region}`, { signing: S3_SERVICE, label: 'S3' }, () => base);
    const call = await s3.signAny(region, { method: 'GET', path, headers: {}, body: Buffer.alloc(0) });
    return s3.send(call);
  }

  /** A JSON 1.1 call (SSM, Secrets Manager) to `service` in `region`. */
  async jsonCall(
    service: 'ssm' | 'secretsmanager',
    region: string,
    target: string,
    input: Record<string, unknown>,
    endpoint?: string,
  ): Promise<UpstreamReply> {
    const base = endpoint ? endpointUrl(endpoint) : new URL(`https://${service}.${region}.amazonaws.com`);
    const label = service === 'ssm' ? 'SSM' : 'Secrets Manager';
    const u = this.upstream(
      `${service}|${base.origin}|${region}`,
      { signing: AWS_JSON_SERVICE(service), label },
      () => base,
    );
    const call = await u.sign(region, target, Buffer.from(JSON.stringify(input), 'utf8'));
    return u.send(call);
  }

  close(): void {
    for (const u of this.upstreams.values()) u.close();
    this.upstreams.clear();
  }
}

/** RFC 3986 unreserved characters stay, everything else is %XX (S3's own encoding of a key segment). */
function encodeS3Segment(s: string): string {
  return encodeURIComponent(s).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
}

/**
 * The error code of a refused AWS call: the JSON protocols' `__type` (namespace and `:...` suffix
 * stripped, as the SDKs do) or X-Amzn-ErrorType, S3's XML <Code>; else `HTTP <status>`.
 */
export function awsErrorCode(reply: UpstreamReply): { code: string; message: string } {
  const text = reply.body.toString('utf8').slice(0, 4096);
  let code: string | undefined;
  let message = '';
  try {
    const j = JSON.parse(text) as Record<string, unknown>;
    if (typeof j.__type === 'string') code = j.__type;
    const m = j.message ?? j.Message;
    if (typeof m === 'string') message = m;
  } catch {
    code = /<Code>([^<]{1,100})<\/Code>/.exec(text)?.[1];
    message = /<Message>([^<]{0,500})<\/Message>/.exec(text)?.[1] ?? '';
  }
  const header = reply.headers['x-amzn-errortype'];
  code ??= typeof header === 'string' ? header : undefined;
  if (code) code = code.split(':')[0]!.split('#').pop()!;
  // Only a name: the code goes into messages and the status line.
  if (!code || !/^[A-Za-z0-9_.]{1,100}$/.test(code)) code = `HTTP ${reply.status}`;
  return { code, message: message.replace(/[\r\n]+/g, ' ').slice(0, 300) };
}
