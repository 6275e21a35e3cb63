// The proxy's own AWS credentials, from the usual chain: environment variables (as the SDK's fromEnv), then
// container credentials, then EC2 IMDSv2. The last two are written here, small, because the SDK's providers
// open their own TCP connections to 169.254.170.2 / 169.254.169.254, and inside an enclave the only way out
// is the egress proxy (docs/reference/enclaver.md, "KMS proxy: startup and credentials"); these speak plain
// HTTP through it.
//
// Unlike odyn 0.5 (Enclaver #218), credentials are refreshed before they expire: a timer refreshes them
// when min(5 min, half their lifetime) remains, and a call that finds them inside that margin refreshes
// first. A failed refresh keeps the old credentials until they really expire, and retries with backoff.
import { readFileSync } from 'node:fs';
import type { AwsCredentialIdentity } from '@smithy/types';
import { withDeadline } from '../deadline.ts';
import type { Logger } from '../log/logger.ts';
import { type EgressProxy, httpThrough } from './egress.ts';

export interface Credentials extends AwsCredentialIdentity {
  /** Which link of the chain gave them (for logs; never the secret). */
  source: string;
}

type Source = { name: string; fetch: () => Promise<Credentials | null> };

const MAX_MARGIN_MS = 5 * 60_000;
const HTTP_TIMEOUT_MS = 5_000;

interface JsonCreds {
  AccessKeyId?: string;
  SecretAccessKey?: string;
  Token?: string;
  Expiration?: string;
  Code?: string;
}

function parseJsonCreds(text: string, source: string): Credentials {
  let j: JsonCreds;
  try {
    j = JSON.parse(text) as JsonCreds;
  } catch {
    throw new Error(`${source}: the credentials response is not JSON`);
  }
  if (j.Code !== undefined && j.Code !== 'Success') throw new Error(`${source}: Code ${j.Code}`);
  if (typeof j.AccessKeyId !== 'string' || typeof j.SecretAccessKey !== 'string') {
    throw new Error(`${source}: the credentials response lacks AccessKeyId/SecretAccessKey`);
  }
  const expiration = j.Expiration ? new Date(j.Expiration) : undefined;
  if (expiration && Number.isNaN(expiration.getTime())) throw new Error(`${source}: bad Expiration`);
  return {
    accessKeyId: j.AccessKeyId,
    secretAccessKey: j.SecretAccessKey,
    sessionToken: j.Token,
    expiration,
    source,
  };
}

/**
 * AWS_ACCESS_KEY_ID & co., read as the SDK's fromEnv reads them. Written here rather than imported: the
 * provider packages pull @aws-sdk/core and smithy's config layer into the measured bundle for ten lines
 * (docs/decisions.md, "AWS credentials from the environment").
 */
function envSource(env: NodeJS.ProcessEnv): Source {
  return {
    name: 'environment',
    fetch: async () => {
      if (!env.AWS_ACCESS_KEY_ID || !env.AWS_SECRET_ACCESS_KEY) return null;
      const exp = env.AWS_CREDENTIAL_EXPIRATION ? new Date(env.AWS_CREDENTIAL_EXPIRATION) : undefined;
      return {
        accessKeyId: env.AWS_ACCESS_KEY_ID,
        secretAccessKey: env.AWS_SECRET_ACCESS_KEY,
        sessionToken: env.AWS_SESSION_TOKEN || undefined,
        expiration: exp && !Number.isNaN(exp.getTime()) ? exp : undefined,
        source: 'environment',
      };
    },
  };
}

/** ECS/EKS-style container credentials (AWS_CONTAINER_CREDENTIALS_FULL_URI / _RELATIVE_URI). */
function containerSource(env: NodeJS.ProcessEnv, egress: EgressProxy | null): Source {
  return {
    name: 'container',
    fetch: async () => {
      const full = env.AWS_CONTAINER_CREDENTIALS_FULL_URI;
      const rel = env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI;
      if (!full && !rel) return null;
      const url = new URL(full ?? `http://169.254.170.2${rel}`);
      if (url.protocol !== 'http:')
        throw new Error('container credentials: only http:// endpoints are supported');
      let token = env.AWS_CONTAINER_AUTHORIZATION_TOKEN;
      if (env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE) {
        token = readFileSync(env.AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE, 'utf8').trim();
      }
      const res = await httpThrough(egress, url, {
        headers: token ? { authorization: token } : {},
        timeoutMs: HTTP_TIMEOUT_MS,
      });
      if (res.status !== 200) throw new Error(`container credentials: ${url.origin} answered ${res.status}`);
      return parseJsonCreds(res.body.toString('utf8'), 'container');
    },
  };
}

/** EC2 instance role credentials over IMDSv2 (token, role name, credentials). */
function imdsSource(env: NodeJS.ProcessEnv, egress: EgressProxy | null): Source {
  return {
    name: 'imds',
    fetch: async () => {
      if ((env.AWS_EC2_METADATA_DISABLED ?? '').toLowerCase() === 'true') return null;
      // Only through the egress proxy: an enclave has no other way out, and outside one (tests, dev
      // without egress) a direct dial would reach the real instance's IMDS.
      if (!egress)
        throw new Error('IMDS is reached only through the egress proxy (the manifest has no egress section)');
      const base = new URL(env.AWS_EC2_METADATA_SERVICE_ENDPOINT ?? 'http://169.254.169.254/');
      const at = (path: string) => new URL(path, base);
      const tokenRes = await httpThrough(egress, at('/latest/api/token'), {
        method: 'PUT',
        headers: { 'x-aws-ec2-metadata-token-ttl-seconds': '21600' },
        timeoutMs: HTTP_TIMEOUT_MS,
      });
      if (tokenRes.status !== 200) throw new Error(`IMDS: token request answered ${tokenRes.status}`);
      const headers = { 'x-aws-ec2-metadata-token': tokenRes.body.toString('utf8').trim() };
      const roleRes = await httpThrough(egress, at('/latest/meta-data/iam/security-credentials/'), {
        headers,
        timeoutMs: HTTP_TIMEOUT_MS,
      });
      if (roleRes.status !== 200) throw new Error(`IMDS: no instance role (answered ${roleRes.status})`);
      const role = roleRes.body.toString('utf8').split('\n')[0]?.trim();
      if (!role || !/^[\w+=,.@-]+$/.test(role)) throw new Error('IMDS: malformed role name');
      const credRes = await httpThrough(egress, at(`/latest/meta-data/iam/security-credentials/${role}`), {
        headers,
        timeoutMs: HTTP_TIMEOUT_MS,
      });
      if (credRes.status !== 200) throw new Error(`IMDS: credentials request answered ${credRes.status}`);
      return parseJsonCreds(credRes.body.toString('utf8'), 'imds');
    },
  };
}

/** The time and the refresh timer, injectable so a test can step past an expiry instead of waiting for it. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const systemClock: Clock = {
  now: () => Date.now(),
  // unref: a pending refresh never keeps the process alive.
  setTimeout: (fn, ms) => setTimeout(fn, ms).unref(),
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export interface CredentialChainOptions {
  egress: EgressProxy | null;
  logger: Logger;
  env?: NodeJS.ProcessEnv;
  /** Test hook: replace the chain. */
  sources?: Source[];
  /** Test hook: a manual clock (default: Date.now and setTimeout). */
  clock?: Clock;
}

export class CredentialChain {
  private current: Credentials | null = null;
  private fetchedAt = 0;
  private inflight: Promise<Credentials> | null = null;
  private timer: unknown = null;
  private failures = 0;
  private retryAt = 0;
  private closed = false;
  private readyWaiters: Array<() => void> = [];
  lastError: string | null = null;
  private readonly sources: Source[];
  private readonly logger: Logger;
  private readonly clock: Clock;

  constructor(opts: CredentialChainOptions) {
    const env = opts.env ?? process.env;
    this.logger = opts.logger;
    this.clock = opts.clock ?? systemClock;
    this.sources = opts.sources ?? [
      envSource(env),
      containerSource(env, opts.egress),
      imdsSource(env, opts.egress),
    ];
  }

  /** Starts fetching in the background; never throws. */
  start(): void {
    this.refresh().catch(() => {});
  }

  close(): void {
    this.closed = true;
    if (this.timer) this.clock.clearTimeout(this.timer);
  }

  private marginMs(c: Credentials): number {
    if (!c.expiration) return 0;
    const lifetime = c.expiration.getTime() - this.fetchedAt;
    return Math.min(MAX_MARGIN_MS, Math.max(0, lifetime / 2));
  }

  private usable(c: Credentials | null, now = this.clock.now()): boolean {
    return !!c && (!c.expiration || c.expiration.getTime() > now + 1000);
  }

  private fresh(c: Credentials | null, now = this.clock.now()): boolean {
    return !!c && (!c.expiration || c.expiration.getTime() - now > this.marginMs(c));
  }

  /**
   * Current credentials. Inside the refresh margin but still valid: a refresh starts in the background
   * and the call goes on with the current ones (no call waits on IMDS while it holds good credentials).
   */
  async get(): Promise<Credentials> {
    if (this.fresh(this.current)) return this.current!;
    if (this.usable(this.current)) {
      if (!this.inflight && this.clock.now() >= this.retryAt) this.start();
      return this.current!;
    }
    return this.refresh();
  }

  /** Resolves once credentials exist, or rejects after `ms` with the reason they do not. */
  async waitReady(ms: number): Promise<void> {
    if (this.usable(this.current)) return;
    let wake!: () => void;
    const ready = new Promise<void>((resolve) => {
      wake = resolve;
      this.readyWaiters.push(wake);
    });
    try {
      await withDeadline(
        ready,
        ms,
        () => new Error(`no AWS credentials yet${this.lastError ? ` (${this.lastError})` : ''}`),
      );
    } finally {
      this.readyWaiters = this.readyWaiters.filter((w) => w !== wake);
    }
  }

  private refresh(): Promise<Credentials> {
    this.inflight ??= this.fetchChain().finally(() => {
      this.inflight = null;
    });
    return this.inflight;
  }

  private async fetchChain(): Promise<Credentials> {
    const errors: string[] = [];
    for (const src of this.sources) {
      try {
        const c = await src.fetch();
        if (!c) continue;
        this.current = c;
        this.fetchedAt = this.clock.now();
        this.failures = 0;
        this.lastError = null;
        this.logger.info(
          { source: c.source, expires: c.expiration?.toISOString() ?? null },
          'AWS credentials loaded',
        );
        for (const w of this.readyWaiters.splice(0)) w();
        this.schedule(this.refreshDelay(c));
        return c;
      } catch (err) {
        errors.push(`${src.name}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    this.failures++;
    this.lastError = errors.length ? errors.join('; ') : 'no source configured credentials';
    this.logger.warn({ reason: this.lastError, attempt: this.failures }, 'no AWS credentials');
    const backoff = Math.min(30_000, 500 * 2 ** Math.min(this.failures, 6));
    this.retryAt = this.clock.now() + backoff;
    this.schedule(backoff);
    throw new Error(this.lastError);
  }

  private refreshDelay(c: Credentials): number | null {
    if (!c.expiration) return null;
    return Math.max(0, c.expiration.getTime() - this.clock.now() - this.marginMs(c));
  }

  private schedule(delay: number | null): void {
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timer = null;
    if (delay === null || this.closed) return;
    this.timer = this.clock.setTimeout(() => this.start(), delay);
  }
}
