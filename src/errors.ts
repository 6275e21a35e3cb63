// Every error of cloister that a client, an operator or a calling program can act on, in one file (as
// undici's lib/core/errors.js): one class per failure kind, each with a stable `code` (CLO_ERR_*), one
// table from code to HTTP status (and to the KMS `__type` a KMS client expects), and the renderers for
// cloister's three wire formats:
//
//   egress proxy      text/plain body "<message>\n"        + header x-cloister-error: <code>
//   attestation API   JSON {"error": "<message>", "code": "<code>"}
//   KMS proxy         JSON {"__type": "<KMS type>", "message": "<message>"} + x-amzn-errortype
//
// Match on `err.code`, never on the message: messages say what happened in words and may change, codes
// do not. docs/errors.md lists every code (a test keeps the two in step).
//
// Not here on purpose: NsmError (src/nsm/types.ts) carries the NSM's own error names (InvalidIndex...)
// as its code, the way a Node system error carries an errno name; the KMS emulator's KmsError carries
// AWS KMS's own exception names. Both are vocabularies of something cloister talks to, not cloister's.

/** What the table says about one code. `status` is what an HTTP client sees; null: never sent over HTTP. */
interface ErrorSpec {
  status: number | null;
  /** The `__type` a KMS client gets when the KMS proxy answers with this error. */
  kmsType: string;
}

const INTERNAL = 'KMSInternalException';
const UNAVAILABLE = 'ServiceUnavailableException';

/** code -> HTTP status (and KMS exception name). The one place these are decided. */
export const ERROR_TABLE = {
  // Any HTTP server of cloister.
  CLO_ERR_BAD_REQUEST: { status: 400, kmsType: 'ValidationException' },
  CLO_ERR_MALFORMED_HTTP: { status: 400, kmsType: 'SerializationException' },
  CLO_ERR_NOT_FOUND: { status: 404, kmsType: 'UnknownOperationException' },
  CLO_ERR_METHOD_NOT_ALLOWED: { status: 405, kmsType: 'UnsupportedOperationException' },
  CLO_ERR_REQUEST_TIMEOUT: { status: 408, kmsType: 'SerializationException' },
  CLO_ERR_BODY_TOO_LARGE: { status: 413, kmsType: 'ValidationException' },
  CLO_ERR_HEADERS_TOO_LARGE: { status: 431, kmsType: 'SerializationException' },
  CLO_ERR_INTERNAL: { status: 500, kmsType: INTERNAL },
  // Egress proxy.
  CLO_ERR_EGRESS_BAD_TARGET: { status: 400, kmsType: 'ValidationException' },
  CLO_ERR_EGRESS_DENIED: { status: 403, kmsType: 'AccessDeniedException' },
  CLO_ERR_EGRESS_REFUSED: { status: 403, kmsType: 'AccessDeniedException' },
  CLO_ERR_EGRESS_UPGRADE: { status: 501, kmsType: 'UnsupportedOperationException' },
  CLO_ERR_EGRESS_TRANSFER_CODING: { status: 501, kmsType: 'UnsupportedOperationException' },
  CLO_ERR_EGRESS_UPSTREAM: { status: 502, kmsType: INTERNAL },
  CLO_ERR_EGRESS_RELAY_UNREACHABLE: { status: 502, kmsType: INTERNAL },
  CLO_ERR_EGRESS_RELAY_PROTOCOL: { status: 502, kmsType: INTERNAL },
  CLO_ERR_EGRESS_TUNNEL_LIMIT: { status: 503, kmsType: UNAVAILABLE },
  CLO_ERR_EGRESS_TIMEOUT: { status: 504, kmsType: 'DependencyTimeoutException' },
  // Attestation API.
  CLO_ERR_NSM: { status: 503, kmsType: UNAVAILABLE },
  // KMS proxy.
  CLO_ERR_KMS_SIGNATURE_INCOMPLETE: { status: 400, kmsType: 'IncompleteSignatureException' },
  CLO_ERR_KMS_SIGNATURE_INVALID: { status: 400, kmsType: 'InvalidSignatureException' },
  CLO_ERR_KMS_UNKNOWN_OPERATION: { status: 400, kmsType: 'UnknownOperationException' },
  CLO_ERR_KMS_SERIALIZATION: { status: 400, kmsType: 'SerializationException' },
  CLO_ERR_KMS_ATTESTATION: { status: 500, kmsType: INTERNAL },
  CLO_ERR_KMS_BAD_REPLY: { status: 502, kmsType: INTERNAL },
  CLO_ERR_KMS_UNREACHABLE: { status: 502, kmsType: INTERNAL },
  CLO_ERR_KMS_NOT_READY: { status: 503, kmsType: UNAVAILABLE },
  CLO_ERR_KMS_NO_CREDENTIALS: { status: 503, kmsType: UNAVAILABLE },
  CLO_ERR_KMS_TIMEOUT: { status: 504, kmsType: 'DependencyTimeoutException' },
  // Not sent over HTTP: what an operator sees on stderr, in the log or as an exit code.
  CLO_ERR_CONFIG: { status: null, kmsType: INTERNAL },
  CLO_ERR_EGRESS_POLICY: { status: null, kmsType: INTERNAL },
  CLO_ERR_USAGE: { status: null, kmsType: INTERNAL },
  CLO_ERR_APP_START: { status: null, kmsType: INTERNAL },
  CLO_ERR_INTERRUPTED: { status: null, kmsType: INTERNAL },
  CLO_ERR_ATTESTATION_INVALID: { status: null, kmsType: INTERNAL },
  CLO_ERR_RELAY_FRAME: { status: null, kmsType: INTERNAL },
  CLO_ERR_RELAY_REFUSED: { status: null, kmsType: INTERNAL },
  CLO_ERR_PROXY_HEADER: { status: null, kmsType: INTERNAL },
  CLO_ERR_TLS_HANDSHAKE: { status: null, kmsType: INTERNAL },
  CLO_ERR_EMULATOR_STATE: { status: null, kmsType: INTERNAL },
  CLO_ERR_TRANSPARENT_SETUP: { status: null, kmsType: INTERNAL },
  CLO_ERR_DNS_RESOLVE: { status: null, kmsType: INTERNAL },
  CLO_ERR_SECRET_SOURCE: { status: null, kmsType: INTERNAL },
  CLO_ERR_SECRET_DECRYPT: { status: null, kmsType: INTERNAL },
  CLO_ERR_SECRET_TARGET: { status: null, kmsType: INTERNAL },
  CLO_ERR_ATTESTED_TLS_ISSUE: { status: null, kmsType: INTERNAL },
  CLO_ERR_ATTESTED_TLS_CONNECT: { status: null, kmsType: INTERNAL },
} as const satisfies Record<string, ErrorSpec>;

export type ErrorCode = keyof typeof ERROR_TABLE;

// A brand instead of the prototype chain, so `err instanceof CloisterError` also holds for an error made
// by a second copy of this module (two bundles, a test importing src/ next to dist/).
const BRAND = Symbol.for('cloister.error');

export class CloisterError extends Error {
  // Each subclass names itself in a field: a bundler may rename a class, never a string.
  override name = 'CloisterError';
  readonly code: ErrorCode;
  declare readonly [BRAND]: true;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    Object.defineProperty(this, BRAND, { value: true });
  }

  /** The HTTP status for this error; 500 for an error that is never meant to reach a client. */
  get status(): number {
    return ERROR_TABLE[this.code].status ?? 500;
  }
}

// `err instanceof CloisterError` checks the brand; `err instanceof SomeSubclass` the prototype chain, as
// usual (so only within one copy). Defined here rather than as a static method: subclasses inherit it.
Object.defineProperty(CloisterError, Symbol.hasInstance, {
  value(this: unknown, x: unknown): boolean {
    if (this !== CloisterError) return Function.prototype[Symbol.hasInstance].call(this, x);
    return typeof x === 'object' && x !== null && (x as { [BRAND]?: unknown })[BRAND] === true;
  },
});

// --- Any HTTP server ---------------------------------------------------------------------------------

/** The request is well-formed HTTP but a field of it is wrong (bad JSON, base64, PEM, size). */
export class BadRequestError extends CloisterError {
  override name = 'BadRequestError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_BAD_REQUEST', message, options);
  }
}

/** Node's HTTP parser refused the bytes (not HTTP/1.1, bad header line, smuggling attempt). */
export class MalformedHttpError extends CloisterError {
  override name = 'MalformedHttpError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_MALFORMED_HTTP', message, options);
  }
}

export class NotFoundError extends CloisterError {
  override name = 'NotFoundError';
  constructor(message: string) {
    super('CLO_ERR_NOT_FOUND', message);
  }
}

export class MethodNotAllowedError extends CloisterError {
  override name = 'MethodNotAllowedError';
  constructor(message: string) {
    super('CLO_ERR_METHOD_NOT_ALLOWED', message);
  }
}

/** The request head did not arrive within the server's header timeout. */
export class RequestTimeoutError extends CloisterError {
  override name = 'RequestTimeoutError';
  constructor(message: string) {
    super('CLO_ERR_REQUEST_TIMEOUT', message);
  }
}

export class BodyTooLargeError extends CloisterError {
  override name = 'BodyTooLargeError';
  constructor(message: string) {
    super('CLO_ERR_BODY_TOO_LARGE', message);
  }
}

export class HeadersTooLargeError extends CloisterError {
  override name = 'HeadersTooLargeError';
  constructor(message: string) {
    super('CLO_ERR_HEADERS_TOO_LARGE', message);
  }
}

/** A bug or an unexpected failure; `cause` holds what was thrown. */
export class InternalError extends CloisterError {
  override name = 'InternalError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_INTERNAL', message, options);
  }
}

// --- Egress proxy ------------------------------------------------------------------------------------

/** The CONNECT authority or absolute URL names no valid host:port. */
export class EgressBadTargetError extends CloisterError {
  override name = 'EgressBadTargetError';
  constructor(message: string) {
    super('CLO_ERR_EGRESS_BAD_TARGET', message);
  }
}

/** The manifest's egress policy does not allow the target. */
export class EgressDeniedError extends CloisterError {
  override name = 'EgressDeniedError';
  constructor(message: string) {
    super('CLO_ERR_EGRESS_DENIED', message);
  }
}

/** The host relay refused the target (every address it resolves to is denied, or the host's own policy). */
export class EgressRefusedError extends CloisterError {
  override name = 'EgressRefusedError';
  constructor(message: string) {
    super('CLO_ERR_EGRESS_REFUSED', message);
  }
}

export class EgressUpgradeError extends CloisterError {
  override name = 'EgressUpgradeError';
  constructor(message: string) {
    super('CLO_ERR_EGRESS_UPGRADE', message);
  }
}

/** A plain-HTTP request with a Transfer-Encoding other than chunked (it could not be passed on as sent). */
export class EgressTransferCodingError extends CloisterError {
  override name = 'EgressTransferCodingError';
  constructor(message: string) {
    super('CLO_ERR_EGRESS_TRANSFER_CODING', message);
  }
}

/** The relay dialled the target and failed (refused, unreachable, DNS), or the upstream broke off. */
export class EgressUpstreamError extends CloisterError {
  override name = 'EgressUpstreamError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_EGRESS_UPSTREAM', message, options);
  }
}

/** No vsock stream to the host's egress relay could be opened. */
export class EgressRelayUnreachableError extends CloisterError {
  override name = 'EgressRelayUnreachableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_EGRESS_RELAY_UNREACHABLE', message, options);
  }
}

/** The relay closed the stream or answered something that is not a reply frame. */
export class EgressRelayProtocolError extends CloisterError {
  override name = 'EgressRelayProtocolError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_EGRESS_RELAY_PROTOCOL', message, options);
  }
}

/** egress.max_tunnels tunnels are open already. */
export class EgressTunnelLimitError extends CloisterError {
  override name = 'EgressTunnelLimitError';
  constructor(message: string) {
    super('CLO_ERR_EGRESS_TUNNEL_LIMIT', message);
  }
}

/** The target was not connected within egress.connect_timeout_ms. */
export class EgressTimeoutError extends CloisterError {
  override name = 'EgressTimeoutError';
  constructor(message: string) {
    super('CLO_ERR_EGRESS_TIMEOUT', message);
  }
}

// --- Attestation API ---------------------------------------------------------------------------------

/** The NSM did not produce an attestation document; `cause` is the NsmError. */
export class NsmUnavailableError extends CloisterError {
  override name = 'NsmUnavailableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_NSM', message, options);
  }
}

// --- KMS proxy ---------------------------------------------------------------------------------------

export class KmsSignatureIncompleteError extends CloisterError {
  override name = 'KmsSignatureIncompleteError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_KMS_SIGNATURE_INCOMPLETE', message, options);
  }
}

export class KmsSignatureInvalidError extends CloisterError {
  override name = 'KmsSignatureInvalidError';
  constructor(message: string) {
    super('CLO_ERR_KMS_SIGNATURE_INVALID', message);
  }
}

export class KmsUnknownOperationError extends CloisterError {
  override name = 'KmsUnknownOperationError';
  constructor(message: string) {
    super('CLO_ERR_KMS_UNKNOWN_OPERATION', message);
  }
}

/** The body of an attested KMS call is not a JSON object, or is nested too deeply. */
export class KmsSerializationError extends CloisterError {
  override name = 'KmsSerializationError';
  constructor(message: string) {
    super('CLO_ERR_KMS_SERIALIZATION', message);
  }
}

/** The NSM did not attest the proxy's recipient key. */
export class KmsAttestationError extends CloisterError {
  override name = 'KmsAttestationError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_KMS_ATTESTATION', message, options);
  }
}

/** KMS answered 200 with something the proxy cannot open (not JSON, no CiphertextForRecipient, bad CMS). */
export class KmsBadReplyError extends CloisterError {
  override name = 'KmsBadReplyError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_KMS_BAD_REPLY', message, options);
  }
}

/** KMS could not be reached through the egress proxy. */
export class KmsUnreachableError extends CloisterError {
  override name = 'KmsUnreachableError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_KMS_UNREACHABLE', message, options);
  }
}

/** Credentials or the recipient key are not ready yet (start-up). */
export class KmsNotReadyError extends CloisterError {
  override name = 'KmsNotReadyError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_KMS_NOT_READY', message, options);
  }
}

/** The credential chain has no usable credentials (expired and not refreshable). */
export class KmsNoCredentialsError extends CloisterError {
  override name = 'KmsNoCredentialsError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_KMS_NO_CREDENTIALS', message, options);
  }
}

export class KmsTimeoutError extends CloisterError {
  override name = 'KmsTimeoutError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_KMS_TIMEOUT', message, options);
  }
}

// --- Operator side (never an HTTP answer) ------------------------------------------------------------
// ConfigError (src/config/errors.ts) is CLO_ERR_CONFIG: it keeps its file/line fields next to the loader.

/** An egress allow/deny rule that cannot be compiled; `errors` names each bad rule. */
export class PolicyError extends CloisterError {
  override name = 'PolicyError';
  constructor(readonly errors: { list: 'allow' | 'deny'; index: number; message: string }[]) {
    super(
      'CLO_ERR_EGRESS_POLICY',
      errors.map((e) => `egress.${e.list}[${e.index}]: ${e.message}`).join('; '),
    );
  }
}

/** A command-line mistake: the command prints its usage and exits 2. */
export class UsageError extends CloisterError {
  override name = 'UsageError';
  constructor(message: string) {
    super('CLO_ERR_USAGE', message);
  }
}

/** The app could not be spawned; `errno` is the spawn error's code (ENOENT, EACCES...) if there was one. */
export class AppStartError extends CloisterError {
  override name = 'AppStartError';
  constructor(
    message: string,
    readonly errno: string | undefined,
  ) {
    super('CLO_ERR_APP_START', message);
  }
}

/** A signal (or an abort) arrived while something was still starting. */
export class InterruptedError extends CloisterError {
  override name = 'InterruptedError';
  constructor(message: string) {
    super('CLO_ERR_INTERRUPTED', message);
  }
}

/** One kind of frame failure on the egress relay protocol, with the errno name the wire reports. */
export type FrameFailure = 'EPROTO' | 'ECONNRESET' | 'ETIMEDOUT';

/** A relay protocol frame that is malformed, truncated or late. `errno` says which. */
export class FrameError extends CloisterError {
  override name = 'FrameError';
  constructor(
    message: string,
    readonly errno: FrameFailure = 'EPROTO',
  ) {
    super('CLO_ERR_RELAY_FRAME', message);
  }
}

/** The host relay refuses a request; `osCode` is the errno number its reply frame carries. */
export class RelayError extends CloisterError {
  override name = 'RelayError';
  constructor(
    readonly osCode: number,
    message: string,
  ) {
    super('CLO_ERR_RELAY_REFUSED', message);
  }
}

/** Which check of an attestation document failed (src/attestation/verify.ts). */
export type AttestationCheck =
  | 'decode'
  | 'cose'
  | 'format'
  | 'root'
  | 'signature'
  | 'chain'
  | 'pcr'
  | 'nonce'
  | 'public_key'
  | 'user_data'
  | 'age'
  | 'debug'
  // Attested TLS (src/attested-tls/): the certificate carries no readable document, or the document does
  // not name the certificate's key.
  | 'certificate'
  | 'binding';

/** An attestation document that does not verify; `check` names the step that failed. */
export class AttestationError extends CloisterError {
  override name = 'AttestationError';
  constructor(
    readonly check: AttestationCheck,
    message: string,
  ) {
    super('CLO_ERR_ATTESTATION_INVALID', message);
  }
}

/** An ingress connection's PROXY protocol v2 header is missing, malformed or late. */
export class ProxyHeaderError extends CloisterError {
  override name = 'ProxyHeaderError';
  constructor(message: string) {
    super('CLO_ERR_PROXY_HEADER', message);
  }
}

/** An ingress connection's TLS handshake failed or did not finish in time. */
export class TlsHandshakeError extends CloisterError {
  override name = 'TlsHandshakeError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_TLS_HANDSHAKE', message, options);
  }
}

/** The KMS emulator's state directory holds a file it cannot read back. */
export class StoreError extends CloisterError {
  override name = 'StoreError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_EMULATOR_STATE', message, options);
  }
}

/** Transparent egress could not be set up (route, iptables nat table, resolv.conf): cloister does not start. */
export class TransparentSetupError extends CloisterError {
  override name = 'TransparentSetupError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_TRANSPARENT_SETUP', message, options);
  }
}

/** The DNS stub's resolver (the host relay or the DoH server) failed to answer: the app gets SERVFAIL. */
export class DnsResolveError extends CloisterError {
  override name = 'DnsResolveError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_DNS_RESOLVE', message, options);
  }
}

/** Which step of a boot-time secret failed: getting its ciphertext, KMS's Decrypt, or placing it. */
export type SecretStage = 'source' | 'decrypt' | 'target';

/**
 * What the three boot-time secret errors (src/secrets/) share. `secret` is the secret's name; `reason` the
 * error code of what refused it: AWS's exception name (AccessDeniedException for a key policy whose
 * attestation condition this image does not meet, NoSuchKey, ParameterNotFound...) or a CLO_ERR_* code
 * (CLO_ERR_EGRESS_DENIED...). Never any part of the plaintext.
 */
abstract class SecretErrorBase extends CloisterError {
  abstract readonly stage: SecretStage;
  constructor(
    code: ErrorCode,
    readonly secret: string,
    readonly reason: string,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(code, message, options);
  }
}

/** A boot-time secret's ciphertext could not be read (file, S3, SSM, Secrets Manager, egress refusal). */
export class SecretSourceError extends SecretErrorBase {
  override name = 'SecretSourceError';
  readonly stage = 'source';
  constructor(secret: string, reason: string, message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_SECRET_SOURCE', secret, reason, message, options);
  }
}

/** KMS did not decrypt a boot-time secret for this enclave (AccessDeniedException: the key policy's PCRs). */
export class SecretDecryptError extends SecretErrorBase {
  override name = 'SecretDecryptError';
  readonly stage = 'decrypt';
  constructor(secret: string, reason: string, message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_SECRET_DECRYPT', secret, reason, message, options);
  }
}

/** A decrypted boot-time secret could not be placed (env, RAM file, ingress TLS key). */
export class SecretTargetError extends SecretErrorBase {
  override name = 'SecretTargetError';
  readonly stage = 'target';
  constructor(secret: string, reason: string, message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_SECRET_TARGET', secret, reason, message, options);
  }
}

export type SecretError = SecretSourceError | SecretDecryptError | SecretTargetError;

export function isSecretError(e: unknown): e is SecretError {
  return e instanceof SecretErrorBase;
}

/** The error of `stage`. */
export function secretError(
  stage: SecretStage,
  secret: string,
  reason: string,
  message: string,
  options?: { cause?: unknown },
): SecretError {
  const C = { source: SecretSourceError, decrypt: SecretDecryptError, target: SecretTargetError }[stage];
  return new C(secret, reason, message, options);
}

/** The enclave could not issue its attested TLS certificate (the NSM failed, or too many nonce requests). */
export class AttestedTlsIssueError extends CloisterError {
  override name = 'AttestedTlsIssueError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_ATTESTED_TLS_ISSUE', message, options);
  }
}

/** `cloister attest connect|proxy` could not reach the enclave or finish a TLS handshake with it. */
export class AttestedTlsConnectError extends CloisterError {
  override name = 'AttestedTlsConnectError';
  constructor(message: string, options?: { cause?: unknown }) {
    super('CLO_ERR_ATTESTED_TLS_CONNECT', message, options);
  }
}

// --- Wire formats ------------------------------------------------------------------------------------

/** An error answer ready to be written: status, headers, body. */
export interface ErrorReply {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Header that carries the code on every error answer, whatever the body format. */
export const ERROR_CODE_HEADER = 'x-cloister-error';

/** What was thrown, as a CloisterError (anything else becomes CLO_ERR_INTERNAL with it as the cause). */
export function toCloisterError(err: unknown): CloisterError {
  if (err instanceof CloisterError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new InternalError(`internal error: ${message}`, { cause: err });
}

/** The egress proxy's format: the message as text, the code in a header. */
export function renderText(err: CloisterError): ErrorReply {
  return {
    status: err.status,
    headers: { 'content-type': 'text/plain; charset=utf-8', [ERROR_CODE_HEADER]: err.code },
    body: `${err.message}\n`,
  };
}

/** The attestation API's (and metrics server's) format: {"error": message, "code": code}. */
export function renderJson(err: CloisterError): ErrorReply {
  return {
    status: err.status,
    headers: { 'content-type': 'application/json', [ERROR_CODE_HEADER]: err.code },
    body: `${JSON.stringify({ error: err.message, code: err.code })}\n`,
  };
}

/** Content type of KMS's JSON protocol (awsJson1_1). */
export const AMZ_JSON = 'application/x-amz-json-1.1';

/**
 * KMS's format: {"__type": KMS exception name, "message"}, the name also in X-Amzn-ErrorType (SDKs pick
 * the exception class from either). `prefix` goes before the message ("cloister KMS proxy: ").
 */
export function renderKms(err: CloisterError, prefix = ''): ErrorReply {
  const type = ERROR_TABLE[err.code].kmsType;
  return {
    status: err.status,
    headers: { 'content-type': AMZ_JSON, 'x-amzn-errortype': type, [ERROR_CODE_HEADER]: err.code },
    body: JSON.stringify({ __type: type, message: `${prefix}${err.message}` }),
  };
}

/** Renders one of the three formats; the servers pick theirs once. */
export type ErrorRenderer = (err: CloisterError) => ErrorReply;
