// Attestation API on 127.0.0.1:<api.listen_port>, compatible with Enclaver's odyn:
//
//   POST /v1/attestation  {"nonce": b64, "user_data": b64, "public_key": PEM SPKI}  (all optional)
//     -> 200 application/cbor, the raw COSE_Sign1 document from the NSM
//   GET  /v1/attestation?nonce=HEX&user_data=HEX   the same, for curl
//   Accept: application/json (or ?format=json) -> {"document": b64, ...decoded fields}
//
// Unlike odyn, the document's public_key is the full DER SubjectPublicKeyInfo of the PEM sent (odyn
// 0.5 embedded only the inner key bytes, a bug), and failures are answered, never dropped: JSON
// {"error": ...} with 400 (bad JSON/base64/PEM, field over 1024 bytes), 404, 405, 413, 503 (NSM).
import { createPublicKey } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { documentToJson } from '../attestation/describe.ts';
import { decodeDocument } from '../attestation/document.ts';
import { ConnectionSet, closeServer, trackConnections } from '../connections.ts';
import { ATTESTATION_FIELD_MAX } from '../constants.ts';
import { pemBlocks } from '../encoding/pem.ts';
import {
  BadRequestError,
  BodyTooLargeError,
  type CloisterError,
  type ErrorCode,
  MethodNotAllowedError,
  NotFoundError,
  NsmUnavailableError,
  renderJson,
  toCloisterError,
} from '../errors.ts';
import { refuseOddRequests } from '../http/refuse.ts';
import { listenOn, readLimitedBody, requestUrl } from '../http/server.ts';
import type { Logger } from '../log/logger.ts';
import { attestationRequests } from '../metrics.ts';
import type { AttestationRequest, Nsm } from '../nsm/types.ts';
import { keepServing } from '../server-errors.ts';
import { type Service, serviceLifetime } from '../service.ts';

export const ATTESTATION_PATH = '/v1/attestation';
/** Three 1024-byte fields as base64 and a PEM fit many times over. */
const MAX_BODY_BYTES = 64 * 1024;
/** How long close() lets requests in flight finish. */
const CLOSE_GRACE_MS = 5000;

/** The plan's part: api.listen_port (RuntimePlan.api). */
export interface ApiSlice {
  port: number;
}

export interface ApiDeps {
  logger: Logger;
  /** Opened lazily by the supervisor: the API must not wait for it at start. */
  nsm: Nsm;
  closeGraceMs?: number;
}

export interface ApiService extends Service {
  /** The port actually bound (differs from the plan's only when it asked for 0). */
  port: number;
}

const bad = (message: string) => new BadRequestError(message);

/** The `result` label of cloister_attestation_requests_total for each refusal (kept from before codes). */
const RESULT_LABEL: Partial<Record<ErrorCode, string>> = {
  CLO_ERR_BAD_REQUEST: 'bad_request',
  CLO_ERR_NOT_FOUND: 'not_found',
  CLO_ERR_METHOD_NOT_ALLOWED: 'method_not_allowed',
  CLO_ERR_BODY_TOO_LARGE: 'too_large',
  CLO_ERR_NSM: 'nsm_error',
};

function sendError(res: ServerResponse, err: CloisterError): void {
  const { status, headers, body } = renderJson(err);
  // `Allow` is part of a 405; a body we stopped reading (413) cannot be drained safely: answer, then close.
  if (err.code === 'CLO_ERR_METHOD_NOT_ALLOWED') headers.Allow = 'GET, POST';
  if (err.code === 'CLO_ERR_BODY_TOO_LARGE') headers.Connection = 'close';
  res.writeHead(status, { ...headers, 'Content-Length': Buffer.byteLength(body) });
  res.end(body);
}

function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

const B64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=|[A-Za-z0-9+/]{2,3})?$/;

/** Strict standard base64 (padding optional); Buffer.from alone would skip bad characters silently. */
function base64Field(body: Record<string, unknown>, key: string): Buffer | null {
  const v = body[key];
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw bad(`${key}: expected a base64 string`);
  if (!B64_RE.test(v)) throw bad(`${key}: invalid base64`);
  return sized(key, Buffer.from(v, 'base64'));
}

function hexParam(params: URLSearchParams, key: string): Buffer | null {
  const v = params.get(key);
  if (v === null || v === '') return null;
  if (!/^([0-9a-fA-F]{2})*$/.test(v)) throw bad(`${key}: expected an even-length hex string`);
  return sized(key, Buffer.from(v, 'hex'));
}

function sized(key: string, b: Buffer): Buffer {
  if (b.length > ATTESTATION_FIELD_MAX) {
    throw bad(`${key}: ${b.length} bytes, the NSM accepts at most ${ATTESTATION_FIELD_MAX}`);
  }
  return b;
}

/** A PEM "PUBLIC KEY" (SubjectPublicKeyInfo) -> its full DER, checked to be a key Node can load. */
function publicKeyField(body: Record<string, unknown>): Buffer | null {
  const v = body.public_key;
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw bad('public_key: expected a PEM string');
  let der: Buffer | undefined;
  try {
    der = pemBlocks(v, 'PUBLIC KEY')[0];
  } catch (err) {
    throw bad(`public_key: ${(err as Error).message}`);
  }
  if (!der) throw bad('public_key: expected a PEM block "-----BEGIN PUBLIC KEY-----" (SubjectPublicKeyInfo)');
  try {
    createPublicKey({ key: der, format: 'der', type: 'spki' });
  } catch (err) {
    throw bad(`public_key: not a valid SubjectPublicKeyInfo (${(err as Error).message})`);
  }
  return sized('public_key', der);
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return readLimitedBody(
    req,
    MAX_BODY_BYTES,
    () => new BodyTooLargeError(`request body over ${MAX_BODY_BYTES} bytes`),
  );
}

async function parsePost(req: IncomingMessage): Promise<AttestationRequest> {
  const raw = await readBody(req);
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch (err) {
    throw bad(`invalid JSON: ${(err as Error).message}`);
  }
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw bad('expected a JSON object');
  const o = body as Record<string, unknown>;
  return {
    nonce: base64Field(o, 'nonce'),
    user_data: base64Field(o, 'user_data'),
    public_key: publicKeyField(o),
  };
}

function parseGet(params: URLSearchParams): AttestationRequest {
  return { nonce: hexParam(params, 'nonce'), user_data: hexParam(params, 'user_data'), public_key: null };
}

function wantsJson(req: IncomingMessage, params: URLSearchParams): boolean {
  if (params.get('format') === 'json') return true;
  const accept = req.headers.accept ?? '';
  return /\bapplication\/json\b/i.test(accept) && !/\bapplication\/cbor\b/i.test(accept);
}

export async function startApiServer(slice: ApiSlice, deps: ApiDeps): Promise<ApiService> {
  const log = deps.logger.child({ component: 'api' });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = requestUrl(req.url);
    if (url === null) throw new BadRequestError('the request target is not a valid URL');
    if (url.pathname !== ATTESTATION_PATH) throw new NotFoundError(`no such path: ${url.pathname}`);
    let attReq: AttestationRequest;
    if (req.method === 'POST') attReq = await parsePost(req);
    else if (req.method === 'GET') attReq = parseGet(url.searchParams);
    else throw new MethodNotAllowedError(`method ${req.method} not allowed`);

    let doc: Uint8Array;
    try {
      doc = await deps.nsm.attestation(attReq);
    } catch (err) {
      throw new NsmUnavailableError(`NSM attestation failed: ${(err as Error).message}`, { cause: err });
    }
    attestationRequests.inc({ result: 'ok' });
    if (wantsJson(req, url.searchParams)) {
      sendJson(res, 200, {
        document: Buffer.from(doc).toString('base64'),
        ...documentToJson(decodeDocument(doc)),
      });
      return;
    }
    res.writeHead(200, { 'Content-Type': 'application/cbor', 'Content-Length': doc.length });
    res.end(doc);
  }

  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    handle(req, res).catch((err: unknown) => {
      const e = toCloisterError(err);
      attestationRequests.inc({ result: RESULT_LABEL[e.code] ?? 'error' });
      if (e.status >= 500)
        log.warn({ status: e.status, code: e.code, err: e.cause ?? e }, 'attestation request failed');
      else log.debug({ status: e.status, code: e.code, err: e }, 'attestation request refused');
      if (res.headersSent) {
        res.destroy();
        return;
      }
      sendError(res, e);
    });
  });
  refuseOddRequests(server, renderJson, (err) => log.debug({ err }, 'malformed HTTP request'));
  const connections = new ConnectionSet();
  const lifetime = serviceLifetime({
    stopAccepting: () => closeServer(server),
    connections,
    graceMs: deps.closeGraceMs ?? CLOSE_GRACE_MS,
  });
  trackConnections(server, connections, () => lifetime.closing);

  const bound = (await listenOn(server, slice.port)).port;
  keepServing(server, log, 'attestation API', { port: bound });
  log.info({ port: bound }, 'attestation API listening');

  return { port: bound, close: lifetime.close, destroy: lifetime.destroy };
}
