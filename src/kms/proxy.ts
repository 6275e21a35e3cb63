// Attesting KMS proxy on 127.0.0.1:<kms_proxy.listen_port>. The app's SDK (Vault's awskms seal, any AWS
// SDK, the aws CLI) talks to it with any credentials; the proxy
//  - for Decrypt, GenerateDataKey, GenerateDataKeyPair, GenerateRandom, DeriveSharedSecret: attaches a
//    fresh NSM attestation document naming its RSA key as `Recipient`, and decrypts the
//    CiphertextForRecipient KMS returns into the field the SDK expects;
//  - forwards every other call (and calls that carry the app's own Recipient) unchanged;
//  - re-signs everything with its own credentials, and reaches KMS only through the egress proxy;
//  - refuses what is not a KMS JSON 1.1 call (request.ts): it never signs what it does not understand.
// Every failure is answered in KMS's JSON error format: the connection is never just dropped.
//
// This file is the wiring: the HTTP server, one request's path through the parts, timing and metrics.
// The parts: request.ts (what the app asked), recipient.ts (key, Recipient, reply opening), upstream.ts
// (signing and the call to KMS), startup.ts (configuration checks), credentials.ts, egress.ts.
import type { KeyObject } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { ConnectionSet, closeServer, trackConnections } from '../connections.ts';
import {
  BodyTooLargeError,
  InternalError,
  KmsNoCredentialsError,
  KmsNotReadyError,
  MethodNotAllowedError,
  renderKms,
  toCloisterError,
} from '../errors.ts';
import { refuseOddRequests } from '../http/refuse.ts';
import { listenOn, readLimitedBody } from '../http/server.ts';
import type { Logger } from '../log/logger.ts';
import { kmsCalls } from '../metrics.ts';
import type { Nsm } from '../nsm/types.ts';
import type { KmsPlan } from '../plan/index.ts';
import { keepServing } from '../server-errors.ts';
import { type Service, serviceLifetime } from '../service.ts';
import { CredentialChain, type CredentialChainOptions } from './credentials.ts';
import type { EgressProxy } from './egress.ts';
import { KMS_PROXY_PREFIX, sendJson, sendProxyError } from './errors.ts';
import { openReply, RecipientKeys, withRecipient } from './recipient.ts';
import { operationLabel, parseKmsRequest } from './request.ts';
import { warnAboutPolicy } from './startup.ts';
import { KmsUpstream, type UpstreamReply } from './upstream.ts';

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
/** How long close() lets KMS calls in flight finish. */
const CLOSE_GRACE_MS = 2000;

const MAX_BODY = 1 << 20;
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

export interface KmsProxyDeps {
  logger: Logger;
  /** Opened lazily by the supervisor: attestation documents are asked for per call. */
  nsm: Nsm;
  /** Where the egress proxy listens, as it bound (the supervisor passes it). Absent or null: no egress
   *  proxy runs, and KMS and IMDS are dialled directly (tests, a host-side run; no way out of an enclave). */
  egress?: EgressProxy | null;
  /** Test hook: credential chain options (e.g. another env). */
  credentials?: Partial<CredentialChainOptions>;
  /** Test hook: use this RSA private key instead of a fresh one (e.g. a published vector's key). */
  recipientKey?: KeyObject;
  closeGraceMs?: number;
}

export interface KmsProxyService extends Service {
  port: number;
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return readLimitedBody(req, MAX_BODY, () => new BodyTooLargeError(`request body over ${MAX_BODY} bytes`));
}

export async function startKmsProxy(kp: KmsPlan, opts: KmsProxyDeps): Promise<KmsProxyService> {
  const log: Logger = opts.logger.child({ component: 'kms-proxy' });
  // Given, not worked out from the manifest: the egress proxy may have bound another port than the
  // manifest's (0), or not run at all (nothing allowed).
  const egress = opts.egress ?? null;
  const { endpoints } = kp;
  warnAboutPolicy(log, egress ? kp.egressPolicy : null, endpoints, opts.credentials?.env ?? process.env);
  const readyWaitMs = kp.settings.ready_wait_ms;

  // Background preparation: neither the key nor the credentials may delay the app's launch.
  const credentials = new CredentialChain({ egress, logger: log, ...opts.credentials });
  credentials.start();
  const keys = new RecipientKeys(opts.recipientKey);
  const upstream = new KmsUpstream({
    endpoints,
    egress,
    timeoutMs: kp.settings.upstream_timeout_ms,
    credentials: () => credentials.get(),
  });

  async function credentialsReady(): Promise<void> {
    try {
      await credentials.waitReady(readyWaitMs);
    } catch (err) {
      throw new KmsNotReadyError(`not ready: ${(err as Error).message}`, { cause: err });
    }
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = performance.now();
    const action = operationLabel(req.headers['x-amz-target']);
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
      const call = parseKmsRequest({ method: req.method, url: req.url, headers: req.headers, body });
      const deadline = performance.now() + readyWaitMs;
      await credentialsReady();
      const input = call.input;
      const key = input ? await keys.get(Math.max(0, deadline - performance.now())) : null;
      const outBody = input && key ? await timed('nsm', () => withRecipient(input, key, opts.nsm)) : body;
      const signed = await timed('sign', () =>
        upstream.sign(call.region, call.target, outBody).catch((err: Error) => {
          // The only thing signing waits on is the credential chain (expired and not refreshable).
          throw new KmsNoCredentialsError(`no usable AWS credentials: ${err.message}`, { cause: err });
        }),
      );
      const reply = await timed('upstream', () => upstream.send(signed));
      if (!key || !call.attested || reply.status !== 200) {
        result = reply.status === 200 ? 'ok' : 'kms_error';
        passThrough(res, reply, serverTiming());
        return;
      }
      const field = call.attested.field;
      const out = await timed('rsa', () => openReply(reply.body, field, key));
      result = 'ok';
      sendJson(res, 200, out, {
        ...pick(reply.headers, ['x-amzn-requestid']),
        'server-timing': serverTiming(),
      });
    } catch (err) {
      const e = toCloisterError(err);
      const fields = { action, status: e.status, code: e.code, err: e };
      if (e.status >= 500) log.warn(fields, 'kms proxy call failed');
      else log.info(fields, 'kms proxy call refused');
      const extra: Record<string, string> = timing.length ? { 'server-timing': serverTiming() } : {};
      // A body we stopped reading cannot be drained safely: answer, then close.
      if (e instanceof BodyTooLargeError) extra.connection = 'close';
      if (e instanceof MethodNotAllowedError) extra.allow = 'POST';
      sendProxyError(res, e, extra);
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
        sendProxyError(res, new InternalError('internal error'));
      });
    },
  );
  refuseOddRequests(server, (err) => renderKms(err, KMS_PROXY_PREFIX));
  const connections = new ConnectionSet();
  const lifetime = serviceLifetime({
    stopAccepting: () => {
      credentials.close();
      return closeServer(server);
    },
    connections,
    graceMs: opts.closeGraceMs ?? CLOSE_GRACE_MS,
    release: () => upstream.close(),
  });
  trackConnections(server, connections, () => lifetime.closing);
  let bound: number;
  try {
    bound = (await listenOn(server, kp.port)).port;
  } catch (err) {
    await lifetime.destroy();
    throw err;
  }
  keepServing(server, log, 'kms proxy', { port: bound });
  const endpointUrl = `http://127.0.0.1:${bound}`;
  log.info(
    { endpoint: endpointUrl, egress: egress ? `${egress.host}:${egress.port}` : 'direct' },
    'kms proxy listening',
  );
  return {
    port: bound,
    env: { AWS_KMS_ENDPOINT: endpointUrl, AWS_ENDPOINT_URL_KMS: endpointUrl },
    close: lifetime.close,
    destroy: lifetime.destroy,
  };
}

function pick(h: Record<string, string | string[]>, names: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const n of names) {
    const v = h[n];
    if (typeof v === 'string') out[n] = v;
  }
  return out;
}

/** KMS's reply as it came, minus the hop-by-hop headers (Node frames the body itself). */
function passThrough(res: ServerResponse, reply: UpstreamReply, serverTiming: string): void {
  const headers: Record<string, string | string[]> = {};
  for (const [k, v] of Object.entries(reply.headers)) if (!HOP_BY_HOP.has(k)) headers[k] = v;
  headers['content-length'] = String(reply.body.length);
  headers['server-timing'] = serverTiming;
  res.writeHead(reply.status, headers);
  res.end(reply.body);
}
