// Attesting KMS proxy on 127.0.0.1:<kms_proxy.listen_port>. The app's SDK (Vault's awskms seal, any AWS
// SDK, the aws CLI) talks to it with any credentials; the proxy
//  - for Decrypt, GenerateDataKey, GenerateDataKeyPair, GenerateRandom, DeriveSharedSecret: attaches a
//    fresh NSM attestation document naming its RSA key as `Recipient`, and decrypts the
//    CiphertextForRecipient KMS returns into the field the SDK expects;
//  - forwards every other call (and calls that carry the app's own Recipient) unchanged;
//  - re-signs everything with its own credentials, and reaches KMS only through the egress proxy.
// Every failure is answered in KMS's JSON error format: the connection is never just dropped.
import { createPublicKey, generateKeyPair, type KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, request, type ServerResponse } from 'node:http';
import { promisify } from 'node:util';
import type { SignatureV4 } from '@smithy/signature-v4';
import { DEFAULT_EGRESS_PROXY_PORT } from '../constants.ts';
import { renderKms } from '../errors.ts';
import { refuseOddRequests } from '../http/refuse.ts';
import { listenOn, readLimitedBody } from '../http/server.ts';
import type { Logger } from '../log/logger.ts';
import { kmsCalls } from '../metrics.ts';
import { compilePolicy } from '../policy/policy.ts';
import { keepServing } from '../server-errors.ts';
import type { Service, ServiceContext } from '../service.ts';
import { decryptEnvelope, spkiKeyId } from './cms.ts';
import { CredentialChain, type CredentialChainOptions } from './credentials.ts';
import { EgressError, type EgressProxy, TunnelAgent } from './egress.ts';
import { AMZ_JSON, KmsError, sendJson, sendKmsError } from './errors.ts';
import { createKmsSigner, readScope, type ScopeError, signKmsRequest } from './sigv4.ts';

// The client side's timeouts (Node's defaults are 300 s for a request and 60 s for its headers, far more
// than a KMS call needs; the attestation API uses the same 10 s / 30 s). They bound how long the app's
// client may take to SEND a request — a KMS request is a few kB of JSON — not how long the proxy may take
// to answer it: waiting for credentials (kms.ready_wait_ms) and for KMS (kms.upstream_timeout_ms) happen
// after the request was read and have their own limits. Node checks them every 30 s, so a stalled client
// is dropped (408) within headers/request timeout + 30 s.
const HEADERS_TIMEOUT_MS = 10_000;
const REQUEST_TIMEOUT_MS = 30_000;
// An idle kept-alive connection stays open 65 s, longer than most clients keep one idle, so the client
// usually closes it first: a request sent just as the server closes would fail with ECONNRESET.
const KEEP_ALIVE_TIMEOUT_MS = 65_000;

/** Attested actions (lower-cased) and the response field that carries their secret. */
const ATTESTED: Record<string, { action: string; field: string }> = {
  decrypt: { action: 'Decrypt', field: 'Plaintext' },
  generatedatakey: { action: 'GenerateDataKey', field: 'Plaintext' },
  generatedatakeypair: { action: 'GenerateDataKeyPair', field: 'PrivateKeyPlaintext' },
  generaterandom: { action: 'GenerateRandom', field: 'Plaintext' },
  derivesharedsecret: { action: 'DeriveSharedSecret', field: 'SharedSecret' },
};

const MAX_BODY = 1 << 20;
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
const PRESIGN_PARAMS = new Set([
  'x-amz-algorithm',
  'x-amz-credential',
  'x-amz-date',
  'x-amz-expires',
  'x-amz-signedheaders',
  'x-amz-signature',
  'x-amz-security-token',
]);
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'transfer-encoding',
  'content-length',
  'proxy-connection',
  'upgrade',
  'te',
  'trailer',
]);

interface RecipientKey {
  privateKey: KeyObject;
  spki: Buffer;
  keyId: Buffer;
}

/** Where the KMS of a region is: endpoints[region] (authority -> https, or a full URL), else AWS's. */
export function kmsEndpoint(endpoints: Record<string, string> | undefined, region: string): URL {
  // Own properties only: a region such as 'constructor' must not find Object.prototype's.
  const configured = endpoints && Object.hasOwn(endpoints, region) ? endpoints[region] : undefined;
  if (configured === undefined) return new URL(`https://kms.${region}.amazonaws.com`);
  return new URL(configured.includes('://') ? configured : `https://${configured}`);
}

function defaultPort(u: URL): number {
  return Number(u.port || (u.protocol === 'https:' ? 443 : 80));
}

export interface KmsProxyOptions {
  /** Test hook: credential chain options (e.g. another env). */
  credentials?: Partial<CredentialChainOptions>;
  /** Listen port override (default kms_proxy.listen_port; 0 = ephemeral). */
  port?: number;
  /** Test hook: use this RSA private key instead of a fresh one (e.g. a published vector's key). */
  recipientKey?: KeyObject;
}

export interface KmsProxyService extends Service {
  port: number;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return readLimitedBody(
    req,
    MAX_BODY,
    () => new KmsError('ValidationException', `cloister KMS proxy: request body over ${MAX_BODY} bytes`, 413),
  );
}

function withTimeout<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(what())), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

interface UpstreamReply {
  status: number;
  headers: Record<string, string | string[]>;
  body: Buffer;
}

export async function startKmsProxy(
  ctx: ServiceContext,
  opts: KmsProxyOptions = {},
): Promise<KmsProxyService> {
  const { manifest, settings } = ctx.config;
  const log: Logger = ctx.logger.child({ svc: 'kms-proxy' });
  const kp = manifest.kms_proxy;
  if (!kp) throw new Error('kms_proxy is not configured in the manifest');
  const egress: EgressProxy | null = manifest.egress
    ? { host: '127.0.0.1', port: manifest.egress.proxy_port ?? DEFAULT_EGRESS_PROXY_PORT }
    : null;
  const endpoints = kp.endpoints ?? {};
  warnAboutPolicy(log, manifest.egress, endpoints, opts.credentials?.env ?? process.env);
  const readyWaitMs = settings.kms.ready_wait_ms;
  const upstreamTimeoutMs = settings.kms.upstream_timeout_ms;

  // Background preparation: neither the key nor the credentials may delay the app's launch.
  const credentials = new CredentialChain({ egress, logger: log, ...opts.credentials });
  credentials.start();
  let recipientKey: RecipientKey | null = null;
  let keyError: string | null = null;
  const keyPair = opts.recipientKey
    ? Promise.resolve({ privateKey: opts.recipientKey, publicKey: createPublicKey(opts.recipientKey) })
    : promisify(generateKeyPair)('rsa', { modulusLength: 2048, publicExponent: 65537 });
  const keyReady: Promise<RecipientKey> = keyPair.then(
    ({ privateKey, publicKey }) => {
      const spki = publicKey.export({ type: 'spki', format: 'der' });
      recipientKey = { privateKey, spki, keyId: spkiKeyId(spki) };
      return recipientKey;
    },
    (err: Error) => {
      keyError = err.message;
      throw err;
    },
  );
  keyReady.catch(() => {});

  const signers = new Map<string, SignatureV4>();
  const agents = new Map<string, TunnelAgent>();
  const signerFor = (region: string) => {
    let s = signers.get(region);
    if (!s) {
      s = createKmsSigner(region, () => credentials.get());
      signers.set(region, s);
    }
    return s;
  };
  const agentFor = (url: URL) => {
    let a = agents.get(url.origin);
    if (!a) {
      a = new TunnelAgent(url, egress, upstreamTimeoutMs);
      agents.set(url.origin, a);
    }
    return a;
  };

  async function ready(needKey: boolean): Promise<RecipientKey | null> {
    const deadline = Date.now() + readyWaitMs;
    try {
      await credentials.waitReady(readyWaitMs);
    } catch (err) {
      throw new KmsError(
        'ServiceUnavailableException',
        `cloister KMS proxy is not ready: ${(err as Error).message}`,
        503,
      );
    }
    if (!needKey) return null;
    if (recipientKey) return recipientKey;
    try {
      return await withTimeout(
        keyReady,
        Math.max(0, deadline - Date.now()),
        () => 'the RSA recipient key is still being generated',
      );
    } catch (err) {
      throw new KmsError(
        'ServiceUnavailableException',
        `cloister KMS proxy is not ready: ${keyError ?? (err as Error).message}`,
        503,
      );
    }
  }

  function sendUpstream(
    url: URL,
    path: string,
    headers: Record<string, string>,
    body: Buffer,
    retried = false,
  ): Promise<UpstreamReply> {
    return new Promise((resolve, reject) => {
      const req = request({
        agent: agentFor(url),
        host: url.hostname,
        port: defaultPort(url),
        method: 'POST',
        path,
        headers: { ...headers, 'content-length': String(body.length) },
      });
      let answered = false;
      req.setTimeout(upstreamTimeoutMs, () =>
        req.destroy(
          new EgressError(`no answer from KMS at ${url.origin} within ${upstreamTimeoutMs} ms`, true),
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
          sendUpstream(url, path, headers, body, true).then(resolve, reject);
          return;
        }
        reject(err instanceof EgressError ? err : new EgressError(`${url.origin}: ${err.message}`));
      });
      req.on('response', (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_BODY)
            req.destroy(new EgressError(`KMS at ${url.origin} sent more than ${MAX_BODY} bytes`));
          else chunks.push(c);
        });
        res.on('end', () =>
          resolve({
            status: res.statusCode ?? 502,
            headers: res.headers as UpstreamReply['headers'],
            body: Buffer.concat(chunks),
          }),
        );
        res.on('error', reject);
      });
      req.end(body);
    });
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    let action = 'unknown';
    let result = 'proxy_error';
    const timing: string[] = [];
    // The phases, then `total` (from the request's headers to the answer): what the client sees beyond
    // `total` is its own work and the hop to the proxy.
    const serverTiming = () => [...timing, `total;dur=${(performance.now() - t0).toFixed(3)}`].join(', ');
    const timed = async <T>(name: string, fn: () => Promise<T> | T): Promise<T> => {
      const s = performance.now();
      try {
        return await fn();
      } finally {
        timing.push(`${name};dur=${(performance.now() - s).toFixed(3)}`);
      }
    };
    try {
      const body = await readBody(req);
      let url: URL;
      try {
        url = new URL(req.url ?? '/', 'http://proxy');
      } catch {
        throw new KmsError(
          'ValidationException',
          'cloister KMS proxy: the request target is not a valid URL',
        );
      }
      let scope: ReturnType<typeof readScope>;
      try {
        scope = readScope(req.headers.authorization, url.searchParams);
      } catch (err) {
        throw new KmsError(
          'IncompleteSignatureException',
          `cloister KMS proxy: ${(err as ScopeError).message}`,
        );
      }
      // The region becomes part of the KMS host name (kms.<region>.amazonaws.com): anything but a region
      // name could turn it into another authority ("x@evil:443#") that receives our signed request.
      if (!REGION_RE.test(scope.region)) {
        throw new KmsError(
          'InvalidSignatureException',
          `cloister KMS proxy: the signature's credential scope names an invalid region '${scope.region.slice(0, 64)}'`,
        );
      }
      if (scope.service !== 'kms') {
        throw new KmsError(
          'InvalidSignatureException',
          `cloister KMS proxy: request signed for service '${scope.service}', not 'kms'`,
        );
      }
      const target = req.headers['x-amz-target'];
      if (typeof target !== 'string' || !/^[\x21-\x7e]+$/.test(target)) {
        throw new KmsError(
          'UnknownOperationException',
          'cloister KMS proxy: X-Amz-Target header missing or malformed',
        );
      }
      // Matched case-insensitively, as odyn does; the output field follows the action, whatever its case.
      const named = /^trentservice\.(\w{1,64})$/i.exec(target)?.[1];
      const attested =
        req.method === 'POST' && url.pathname === '/' && named && Object.hasOwn(ATTESTED, named.toLowerCase())
          ? ATTESTED[named.toLowerCase()]
          : undefined;
      // Metric label: only KMS's own operation names, so a client cannot grow the label set without bound.
      action = attested?.action ?? (named && KMS_OPERATIONS.has(named) ? named : 'other');
      let input: Record<string, unknown> | null = null;
      if (attested) {
        const text = body.toString('utf8') || '{}';
        // KMS inputs are a few levels deep (EncryptionContext is the deepest). Refuse deep nesting up front:
        // whether JSON.stringify can write such a body back depends on the V8 version.
        if (exceedsJsonDepth(text, MAX_JSON_DEPTH)) {
          throw new KmsError(
            'SerializationException',
            `cloister KMS proxy: the request body is nested too deeply (more than ${MAX_JSON_DEPTH} levels)`,
          );
        }
        try {
          const parsed: unknown = JSON.parse(text);
          if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed))
            throw new Error('not an object');
          input = parsed as Record<string, unknown>;
        } catch {
          throw new KmsError(
            'SerializationException',
            'cloister KMS proxy: the request body is not a JSON object',
          );
        }
        // The app brought its own Recipient: it will decrypt the reply itself, so pass it through as is.
        if (input.Recipient !== undefined && input.Recipient !== null) input = null;
      }
      const key = await ready(input !== null);
      const endpoint = kmsEndpoint(endpoints, scope.region);
      let outBody = body;
      if (input !== null && key) {
        const doc = await timed('nsm', () =>
          ctx.nsm.attestation({ public_key: key.spki }).catch((err: Error) => {
            throw new KmsError(
              'KMSInternalException',
              `cloister KMS proxy: attestation failed: ${err.message}`,
              500,
            );
          }),
        );
        input.Recipient = {
          AttestationDocument: Buffer.from(doc).toString('base64'),
          KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256',
        };
        outBody = Buffer.from(JSON.stringify(input), 'utf8');
      }
      // The query goes on as sent, minus the app's own presigning parameters: the proxy signs in headers.
      const query: Record<string, string | string[]> = {};
      const forwarded = new URLSearchParams();
      for (const [k, v] of url.searchParams) {
        if (PRESIGN_PARAMS.has(k.toLowerCase())) continue;
        forwarded.append(k, v);
        const prev = query[k];
        query[k] = prev === undefined ? v : Array.isArray(prev) ? [...prev, v] : [prev, v];
      }
      const search = forwarded.toString();
      const path = search ? `${url.pathname}?${search}` : url.pathname;
      const host = endpoint.host;
      const headers = await timed('sign', () =>
        signKmsRequest(signerFor(scope.region), {
          host,
          path: url.pathname,
          query,
          headers: { 'content-type': AMZ_JSON, 'x-amz-target': target },
          body: outBody,
        }).catch((err: Error) => {
          // The only thing signing waits on is the credential chain (expired and not refreshable).
          throw new KmsError(
            'ServiceUnavailableException',
            `cloister KMS proxy: no usable AWS credentials: ${err.message}`,
            503,
          );
        }),
      );
      const reply = await timed('upstream', () => sendUpstream(endpoint, path, headers, outBody));
      if (input === null || reply.status !== 200 || !attested) {
        result = reply.status === 200 ? 'ok' : 'kms_error';
        passThrough(res, reply, serverTiming());
        return;
      }
      const out = await timed('rsa', () => openReply(reply.body, attested.field, key!));
      result = 'ok';
      sendJson(res, 200, out, {
        ...pick(reply.headers, ['x-amzn-requestid']),
        'server-timing': serverTiming(),
      });
    } catch (err) {
      const kerr = toKmsError(err);
      if (kerr.status >= 500)
        log.warn(
          { action, status: kerr.status, error: kerr.type, reason: kerr.message },
          'kms proxy call failed',
        );
      else
        log.info(
          { action, status: kerr.status, error: kerr.type, reason: kerr.message },
          'kms proxy call refused',
        );
      const extra: Record<string, string> = timing.length ? { 'server-timing': serverTiming() } : {};
      // A body we stopped reading cannot be drained safely: answer, then close.
      if (kerr.status === 413) extra.connection = 'close';
      sendKmsError(res, kerr, extra);
    } finally {
      const ms = performance.now() - t0;
      kmsCalls.observe({ action, result }, ms / 1000);
      if (result !== 'proxy_error') log.debug({ action, result, ms: Math.round(ms * 10) / 10 }, 'kms call');
    }
  }

  const server = createServer(
    {
      headersTimeout: HEADERS_TIMEOUT_MS,
      requestTimeout: REQUEST_TIMEOUT_MS,
      keepAliveTimeout: KEEP_ALIVE_TIMEOUT_MS,
    },
    (req, res) => {
      handle(req, res).catch(() => {
        if (!res.headersSent)
          sendKmsError(res, new KmsError('KMSInternalException', 'cloister KMS proxy: internal error', 500));
        else res.destroy();
      });
    },
  );
  refuseOddRequests(server, (err) => renderKms(err, 'cloister KMS proxy: '));
  const port = opts.port ?? kp.listen_port;
  const bound = (await listenOn(server, port)).port;
  keepServing(server, log, 'kms proxy', { port: bound });
  const endpointUrl = `http://127.0.0.1:${bound}`;
  log.info(
    { endpoint: endpointUrl, egress: egress ? `${egress.host}:${egress.port}` : 'direct' },
    'kms proxy listening',
  );
  return {
    port: bound,
    env: { AWS_KMS_ENDPOINT: endpointUrl, AWS_ENDPOINT_URL_KMS: endpointUrl },
    close: async () => {
      credentials.close();
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
        setTimeout(() => server.closeAllConnections(), 2000).unref();
      });
      for (const a of agents.values()) a.destroy();
    },
  };
}

/** Takes CiphertextForRecipient out of a KMS reply and puts the decrypted secret in its field. */
function openReply(body: Buffer, field: string, key: RecipientKey): Record<string, unknown> {
  let out: Record<string, unknown>;
  try {
    out = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
    if (!out || typeof out !== 'object' || Array.isArray(out)) throw new Error('not an object');
  } catch {
    throw new KmsError(
      'KMSInternalException',
      'cloister KMS proxy: the reply from KMS is not a JSON object',
      502,
    );
  }
  const cfr = out.CiphertextForRecipient;
  if (typeof cfr !== 'string') {
    throw new KmsError(
      'KMSInternalException',
      'cloister KMS proxy: the reply from KMS has no CiphertextForRecipient',
      502,
    );
  }
  let secret: Buffer;
  try {
    secret = decryptEnvelope(Buffer.from(cfr, 'base64'), key.privateKey, key.keyId);
  } catch (err) {
    throw new KmsError('KMSInternalException', `cloister KMS proxy: ${(err as Error).message}`, 502);
  }
  delete out.CiphertextForRecipient;
  out[field] = secret.toString('base64');
  return out;
}

function pick(h: Record<string, string | string[]>, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = h[n];
    if (typeof v === 'string') out[n] = v;
  }
  return out;
}

function passThrough(res: ServerResponse, reply: UpstreamReply, serverTiming: string): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(reply.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
  headers['content-length'] = String(reply.body.length);
  headers['server-timing'] = serverTiming;
  res.writeHead(reply.status, headers);
  res.end(reply.body);
}

function toKmsError(err: unknown): KmsError {
  if (err instanceof KmsError) return err;
  if (err instanceof EgressError) {
    return err.timeout
      ? new KmsError('DependencyTimeoutException', `cloister KMS proxy: ${err.message}`, 504)
      : new KmsError('KMSInternalException', `cloister KMS proxy: cannot reach KMS: ${err.message}`, 502);
  }
  return new KmsError(
    'KMSInternalException',
    `cloister KMS proxy: ${err instanceof Error ? err.message : String(err)}`,
    500,
  );
}

function warnAboutPolicy(
  log: Logger,
  egress: { allow?: string[]; deny?: string[] } | undefined,
  endpoints: Record<string, string>,
  env: NodeJS.ProcessEnv,
): void {
  if (!egress) {
    log.warn(
      'kms proxy: no egress section in the manifest; KMS and IMDS are dialled directly (no way out of a real enclave)',
    );
    return;
  }
  let policy: ReturnType<typeof compilePolicy>;
  try {
    policy = compilePolicy(egress.allow ?? [], egress.deny ?? []);
  } catch {
    return; // the egress proxy reports invalid rules itself
  }
  const targets = Object.entries(endpoints).map(([region, _v]) => ({
    what: `kms_proxy.endpoints.${region}`,
    url: kmsEndpoint(endpoints, region),
  }));
  if (Object.keys(endpoints).length === 0) {
    targets.push({
      what: 'the default KMS endpoint (kms.<region>.amazonaws.com)',
      url: kmsEndpoint({}, 'us-east-1'),
    });
  }
  for (const t of targets) {
    const host = t.url.hostname.replace(/^\[|\]$/g, '');
    const d = policy.check(host, defaultPort(t.url));
    if (!d.allowed) {
      log.warn(
        { endpoint: `${host}:${defaultPort(t.url)}`, reason: d.reason },
        `kms proxy: egress policy does not allow ${t.what}; KMS calls will fail until egress.allow lists it`,
      );
    }
  }
  if (
    !env.AWS_ACCESS_KEY_ID &&
    !env.AWS_CONTAINER_CREDENTIALS_FULL_URI &&
    !env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI &&
    (env.AWS_EC2_METADATA_DISABLED ?? '').toLowerCase() !== 'true'
  ) {
    const imds = new URL(env.AWS_EC2_METADATA_SERVICE_ENDPOINT ?? 'http://169.254.169.254/');
    const d = policy.check(imds.hostname.replace(/^\[|\]$/g, ''), defaultPort(imds));
    if (!d.allowed) {
      log.warn(
        { endpoint: imds.host, reason: d.reason },
        'kms proxy: egress policy does not allow IMDS; the proxy will have no credentials',
      );
    }
  }
}

/** Deepest nesting accepted in a request body that the proxy parses and re-serializes. */
const MAX_JSON_DEPTH = 32;

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
