// The KMS side of the proxy: which endpoint serves a region, the request signed with the proxy's own
// credentials, and the call itself over a pooled tunnel through the egress proxy. The boot-time secrets
// (src/secrets/) use the same client for KMS and, with another `service`, for S3, SSM and Secrets Manager.
import { request } from 'node:http';
import type { SignatureV4 } from '@smithy/signature-v4';
import type { AwsCredentialIdentity } from '@smithy/types';
import { AMZ_JSON, KmsTimeoutError, KmsUnreachableError } from '../errors.ts';
import { EgressError, type EgressProxy, TunnelAgent } from './egress.ts';
import { AWS_JSON_SERVICE, createSigner, type SigningService, signRequest } from './sigv4.ts';

/** Largest KMS reply read (KMS replies are a few kB of JSON). */
const MAX_REPLY = 1 << 20;

/** Where the KMS of a region is: endpoints[region] (authority -> https, or a full URL), else AWS's. */
export function kmsEndpoint(endpoints: Record<string, string> | undefined, region: string): URL {
  // Own properties only: a region such as 'constructor' must not find Object.prototype's.
  const configured = endpoints && Object.hasOwn(endpoints, region) ? endpoints[region] : undefined;
  if (configured === undefined) return new URL(`https://kms.${region}.amazonaws.com`);
  return new URL(configured.includes('://') ? configured : `https://${configured}`);
}

export function defaultPort(u: URL): number {
  return Number(u.port || (u.protocol === 'https:' ? 443 : 80));
}

export interface UpstreamReply {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

export interface SignedCall {
  endpoint: URL;
  headers: Record<string, string>;
  body: Buffer;
  /** Default POST. */
  method?: string;
  /** Default `/` (already percent-encoded). */
  path?: string;
}

export interface KmsUpstreamOptions {
  endpoints: Record<string, string>;
  egress: EgressProxy | null;
  timeoutMs: number;
  credentials: () => Promise<AwsCredentialIdentity>;
  /**
   * Another AWS service than KMS (the boot-time secrets' S3, SSM, Secrets Manager): how it signs and
   * where a region's endpoint is. Default: KMS, kmsEndpoint(endpoints, region).
   */
  service?: { signing: SigningService; endpoint: (region: string) => URL; label: string };
}

export class KmsUpstream {
  private readonly signers = new Map<string, SignatureV4>();
  private readonly agents = new Map<string, TunnelAgent>();

  /** What the messages call the service. */
  private readonly label: string;

  constructor(private readonly opts: KmsUpstreamOptions) {
    this.label = opts.service?.label ?? 'KMS';
  }

  /** Signs `POST /` with X-Amz-Target `target` and `body` for the region's endpoint. */
  sign(region: string, target: string, body: Buffer): Promise<SignedCall> {
    return this.signAny(region, {
      method: 'POST',
      path: '/',
      headers: { 'content-type': AMZ_JSON, 'x-amz-target': target },
      body,
    });
  }

  /** Signs any request without a query (S3's GET /bucket/key) for the region's endpoint. */
  async signAny(
    region: string,
    req: { method: string; path: string; headers: Record<string, string>; body: Buffer },
  ): Promise<SignedCall> {
    const service = this.opts.service;
    const endpoint = service ? service.endpoint(region) : kmsEndpoint(this.opts.endpoints, region);
    let signer = this.signers.get(region);
    if (!signer) {
      // One signer per region: SignatureV4 pulls credentials from the provider on every sign.
      signer = createSigner(region, this.opts.credentials, service?.signing ?? AWS_JSON_SERVICE('kms'));
      this.signers.set(region, signer);
    }
    const headers = await signRequest(signer, { host: endpoint.host, ...req });
    return { endpoint, headers, body: req.body, method: req.method, path: req.path };
  }

  /** Sends a signed call and reads KMS's whole reply. */
  async send(call: SignedCall): Promise<UpstreamReply> {
    try {
      return await this.exchange(call);
    } catch (err) {
      if (err instanceof EgressError && err.timeout) throw new KmsTimeoutError(err.message, { cause: err });
      const why = err instanceof Error ? err.message : String(err);
      throw new KmsUnreachableError(`cannot reach ${this.label}: ${why}`, { cause: err });
    }
  }

  /** One exchange; EgressError when KMS cannot be reached, is slow, or answers what no client could read. */
  private exchange(call: SignedCall, retried = false): Promise<UpstreamReply> {
    const { endpoint, headers, body } = call;
    const timeoutMs = this.opts.timeoutMs;
    return new Promise((resolve, reject) => {
      const req = request({
        agent: this.agentFor(endpoint),
        host: endpoint.hostname,
        port: defaultPort(endpoint),
        method: call.method ?? 'POST',
        path: call.path ?? '/',
        headers: { ...headers, 'content-length': String(body.length) },
      });
      let answered = false;
      req.setTimeout(timeoutMs, () =>
        req.destroy(
          new EgressError(`no answer from ${this.label} at ${endpoint.origin} within ${timeoutMs} ms`, true),
        ),
      );
      req.on('error', (err: NodeJS.ErrnoException) => {
        // A kept-alive connection the other end closed while idle: the request never reached KMS,
        // so send it once more on a fresh connection (Node's documented pattern for reusedSocket).
        if (
          !answered &&
          !retried &&
          req.reusedSocket &&
          (err.code === 'ECONNRESET' || err.code === 'EPIPE')
        ) {
          this.exchange(call, true).then(resolve, reject);
          return;
        }
        reject(err instanceof EgressError ? err : new EgressError(`${endpoint.origin}: ${err.message}`));
      });
      req.on('response', (res) => {
        answered = true;
        // Node's parser reads any three digits; a reply the app's client could not be given is no reply.
        const status = res.statusCode ?? 0;
        if (status < 200 || status > 599) {
          req.destroy(new EgressError(`${this.label} at ${endpoint.origin} answered with status ${status}`));
          return;
        }
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_REPLY)
            req.destroy(
              new EgressError(`${this.label} at ${endpoint.origin} sent more than ${MAX_REPLY} bytes`),
            );
          else chunks.push(c);
        });
        res.on('end', () =>
          resolve({
            status,
            headers: res.headers as UpstreamReply['headers'],
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      });
      req.end(body);
    });
  }

  close(): void {
    for (const a of this.agents.values()) a.destroy();
  }

  private agentFor(url: URL): TunnelAgent {
    let a = this.agents.get(url.origin);
    if (!a) {
      a = new TunnelAgent(url, this.opts.egress, this.opts.timeoutMs);
      this.agents.set(url.origin, a);
    }
    return a;
  }
}
