// A local KMS for dev mode and tests: the awsJson1_1 API on HTTP, SigV4 checked against configured
// credentials, keys persisted in a state directory, key policies with attestation conditions.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { verifyAttestation } from '../attestation/verify.ts';
import { ConnectionSet, closeServer, trackConnections } from '../connections.ts';
import { renderKms } from '../errors.ts';
import { refuseOddRequests } from '../http/refuse.ts';
import { listenOn, readLimitedBody } from '../http/server.ts';
import { sendJson } from '../kms/errors.ts';
import { createLogger, type Logger } from '../log/logger.ts';
import { keepServing } from '../server-errors.ts';
import { type Service, serviceLifetime } from '../service.ts';
import { ACTIONS, type ActionContext, type VerifiedRecipient } from './actions.ts';
import { KmsError, sendKmsError } from './errors.ts';
import { SignatureError, verifySignature } from './sigv4-verify.ts';
import { KeyStore } from './store.ts';

export interface EmulatorCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  /** If set, requests with this key id must carry it as X-Amz-Security-Token. */
  sessionToken?: string;
  /** Who signs with these credentials, as key policies name it (default `arn:aws:iam::<account>:user/<id>`);
   *  an instance's credentials are a role session, `arn:aws:sts::<account>:assumed-role/<role>/<instance>`. */
  principal?: string;
}

export interface KmsEmulatorOptions {
  /** Where keys and aliases live (created if missing). */
  stateDir: string;
  /** Listen address; default 127.0.0.1 and an ephemeral port (0). */
  host?: string;
  port?: number;
  /** PEM of the root that Recipient attestation documents must chain to (the software NSM's root.pem).
   *  Without it, requests that carry a Recipient are refused. */
  attestationRootPem?: string;
  /** Accepted SigV4 credentials: a list, or a lookup by access key id (called per request, so it may
   *  change over time). Without it the emulator checks the signature's shape only, not its value. */
  credentials?: EmulatorCredentials[] | ((accessKeyId: string) => EmulatorCredentials | undefined);
  /** Region and account in key ARNs (default us-east-1, 111122223333). */
  region?: string;
  accountId?: string;
  logger?: Logger;
  /** Serve HTTPS with this key and certificate (PEM) instead of plain HTTP. */
  tls?: { key: string; cert: string };
}

/** close() and destroy() both cut requests in flight off (a test and dev stand-in). */
export interface KmsEmulator extends Service {
  /** http(s)://host:port (no trailing slash). */
  url: string;
  host: string;
  port: number;
  store: KeyStore;
}

const MAX_BODY = 1 << 20;

function readBody(req: IncomingMessage): Promise<Buffer> {
  return readLimitedBody(
    req,
    MAX_BODY,
    () => new KmsError('ValidationException', 'Request body too large', 413),
  );
}

export async function startKmsEmulator(opts: KmsEmulatorOptions): Promise<KmsEmulator> {
  const logger = opts.logger ?? createLogger({ name: 'kms-emulator' });
  const region = opts.region ?? 'us-east-1';
  const accountId = opts.accountId ?? '111122223333';
  if (!/^\d{12}$/.test(accountId))
    throw new Error(`kms-emulator: account id must be 12 digits, got '${accountId}'`);
  const store = new KeyStore(opts.stateDir, region, accountId);
  const creds = opts.credentials;
  const lookup =
    creds === undefined
      ? undefined
      : typeof creds === 'function'
        ? creds
        : (id: string) => creds.find((c) => c.accessKeyId === id);

  const verifyRecipient = async (doc: Buffer): Promise<VerifiedRecipient> => {
    if (!opts.attestationRootPem) {
      throw new KmsError(
        'ValidationException',
        'The KMS emulator has no attestation root configured (--attestation-root); it cannot verify Recipient.AttestationDocument.',
      );
    }
    let verified: Awaited<ReturnType<typeof verifyAttestation>>;
    try {
      verified = await verifyAttestation(doc, { rootPem: opts.attestationRootPem });
    } catch (err) {
      throw new KmsError(
        'ValidationException',
        `Recipient.AttestationDocument is not valid: ${err instanceof Error ? err.message : String(err)}`,
      );
    }
    if (!verified.publicKey || verified.publicKey.length === 0) {
      throw new KmsError('ValidationException', 'Recipient.AttestationDocument has no public_key');
    }
    return { pcrs: verified.pcrs, publicKey: verified.publicKey };
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const requestId = randomUUID();
    const started = process.hrtime.bigint();
    let action = '-';
    try {
      if (req.method !== 'POST')
        throw new KmsError('UnknownOperationException', `${req.method} is not supported`, 400);
      const body = await readBody(req);
      const path = req.url ?? '/';
      let principal = `arn:aws:iam::${accountId}:user/kms-emulator`;
      if (lookup) {
        const scope = await verifySignature({ method: 'POST', path, headers: req.headers, body, lookup });
        principal =
          lookup(scope.accessKeyId)?.principal ?? `arn:aws:iam::${accountId}:user/${scope.accessKeyId}`;
      } else if (!/^AWS4-HMAC-SHA256 Credential=/.test(req.headers.authorization ?? '')) {
        throw new KmsError('MissingAuthenticationTokenException', 'Missing Authentication Token', 400);
      }
      const target = req.headers['x-amz-target'];
      const m = typeof target === 'string' ? /^TrentService\.(\w+)$/.exec(target) : null;
      // Own properties only: 'TrentService.constructor' must not call Object.prototype's members.
      const handler = m && Object.hasOwn(ACTIONS, m[1]!) ? ACTIONS[m[1]!] : undefined;
      if (!m || !handler) throw new KmsError('UnknownOperationException', '', 400);
      action = m[1]!;
      let input: unknown;
      try {
        input = body.length === 0 ? {} : JSON.parse(body.toString('utf8'));
      } catch {
        throw new KmsError('SerializationException', 'Start of structure or map found where not expected.');
      }
      if (!input || typeof input !== 'object' || Array.isArray(input)) {
        throw new KmsError('SerializationException', 'The request body must be a JSON object.');
      }
      const ctx: ActionContext = { store, verifyRecipient, principal };
      const out = await handler(ctx, input as Record<string, unknown>);
      sendJson(res, 200, out, { 'x-amzn-requestid': requestId });
      logger.debug({ action, status: 200, ms: Number(process.hrtime.bigint() - started) / 1e6 }, 'kms call');
    } catch (err) {
      const kerr =
        err instanceof KmsError
          ? err
          : err instanceof SignatureError
            ? new KmsError(err.type, err.message, 400)
            : new KmsError('KMSInternalException', 'internal error in the KMS emulator', 500);
      if (!(err instanceof KmsError) && !(err instanceof SignatureError)) {
        logger.error(
          { action, err: err instanceof Error ? err.message : String(err) },
          'kms emulator failure',
        );
      }
      logger.info({ action, status: kerr.status, error: kerr.type }, 'kms call refused');
      sendKmsError(res, kerr, {
        'x-amzn-requestid': requestId,
        ...(kerr.status === 413 ? { connection: 'close' } : {}),
      });
    }
  }

  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch(() => res.destroy());
  };
  const server = opts.tls
    ? createHttpsServer({ key: opts.tls.key, cert: opts.tls.cert }, onRequest)
    : createServer(onRequest);
  server.keepAliveTimeout = 65_000;
  refuseOddRequests(server, renderKms);
  const connections = new ConnectionSet();
  // Requests in flight are cut off at close: the emulator is a test and dev stand-in.
  const lifetime = serviceLifetime({ stopAccepting: () => closeServer(server), connections, graceMs: 0 });
  trackConnections(server, connections);
  const addr = await listenOn(server, opts.port ?? 0, opts.host);
  keepServing(server, logger, 'kms emulator', { port: addr.port });
  const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
  const url = `${opts.tls ? 'https' : 'http'}://${host}:${addr.port}`;
  logger.info({ url, keys: store.keys.size }, 'kms emulator listening');
  return {
    url,
    host: addr.address,
    port: addr.port,
    store,
    close: lifetime.close,
    destroy: lifetime.destroy,
  };
}
