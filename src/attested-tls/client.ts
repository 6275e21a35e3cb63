// Client side of attested TLS, for Node programs and the `cloister attest connect|proxy` commands:
//
//   const { socket, identity } = await connectAttested({ host, port, pcrs: { 0: pcr0 }, maxAgeMs: 600_000 });
//   const agent = new AttestedAgent({ pcrs: { 0: pcr0 } });   // https.request({ agent, ... })
//
// The certificate is self-signed, so Node's own chain check is off (rejectUnauthorized: false) and the
// attestation check replaces it: nothing is written on a connection before its certificate passed
// verifyAttestedCertificate. The handshake itself still proves the peer holds the certificate's key.
import { randomBytes } from 'node:crypto';
import { Agent, type AgentOptions } from 'node:https';
import type { Duplex } from 'node:stream';
import { type ConnectionOptions, type TLSSocket, connect as tlsConnect } from 'node:tls';
import { withDeadline } from '../deadline.ts';
import { AttestedTlsConnectError } from '../errors.ts';
import { nonceServername } from './sni-nonce.ts';
import { type AttestedIdentity, type AttestedTlsPolicy, verifyAttestedCertificate } from './verify.ts';

export { type AttestedIdentity, type AttestedTlsPolicy, verifyAttestedCertificate } from './verify.ts';

export interface AttestedConnectOptions extends AttestedTlsPolicy {
  host: string;
  port: number;
  /**
   * Ask for a document made for this connection: a random nonce goes in the server name (SNI) and the
   * document must carry it (`policy.nonce` is then set by this function).
   */
  fresh?: boolean;
  /** Server name to send when not `fresh` (default: none for an IP address, else `host`). */
  servername?: string;
  /** Connect plus handshake plus verification must finish within this (default 10 s). */
  timeoutMs?: number;
}

export interface AttestedConnection {
  socket: TLSSocket;
  identity: AttestedIdentity;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const FRESH_NONCE_BYTES = 16;

/** The policy for one connection: a fresh nonce goes both into the server name and into the policy. */
function connectionPolicy(o: { fresh?: boolean; servername?: string } & AttestedTlsPolicy): {
  policy: AttestedTlsPolicy;
  servername?: string;
} {
  if (!o.fresh) return { policy: o, servername: o.servername };
  const nonce = randomBytes(FRESH_NONCE_BYTES);
  return { policy: { ...o, nonce }, servername: nonceServername(nonce) };
}

/** Waits for the handshake of `socket`, then verifies the peer's certificate; destroys the socket on failure. */
async function verifyPeer(
  socket: TLSSocket,
  policy: AttestedTlsPolicy,
  what: string,
): Promise<AttestedIdentity> {
  // Until the caller owns the socket, an error is reported through the promise, never left unhandled.
  const swallow = () => {};
  socket.on('error', swallow);
  try {
    return await verifyHandshake(socket, policy, what);
  } finally {
    socket.off('error', swallow);
  }
}

async function verifyHandshake(
  socket: TLSSocket,
  policy: AttestedTlsPolicy,
  what: string,
): Promise<AttestedIdentity> {
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(new AttestedTlsConnectError(`${what}: ${err.message}`, { cause: err }));
    socket.once('error', onError);
    socket.once('close', () => reject(new AttestedTlsConnectError(`${what}: closed during the handshake`)));
    socket.once('secureConnect', () => {
      socket.off('error', onError);
      resolve();
    });
  });
  return verifyAttestedCertificate(socket.getPeerCertificate(false), policy);
}

/** Connects, completes the TLS handshake and verifies the enclave's certificate before anything is sent. */
export async function connectAttested(o: AttestedConnectOptions): Promise<AttestedConnection> {
  const { policy, servername } = connectionPolicy(o);
  const isIp = /^[\d.]+$|:/.test(o.host);
  const socket = tlsConnect({
    host: o.host,
    port: o.port,
    servername: servername ?? (isIp ? undefined : o.host),
    rejectUnauthorized: false,
  });
  const timeoutMs = o.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  try {
    const identity = await withDeadline(
      verifyPeer(socket, policy, `${o.host}:${o.port}`),
      timeoutMs,
      () => new AttestedTlsConnectError(`${o.host}:${o.port}: no verified handshake within ${timeoutMs} ms`),
    );
    return { socket, identity };
  } catch (err) {
    socket.destroy();
    throw err;
  }
}

export interface AttestedAgentOptions extends AgentOptions {
  /** The attestation policy every connection of this agent must pass. */
  policy: AttestedTlsPolicy;
  /** Ask for a fresh document (nonce in SNI) on every new connection. */
  fresh?: boolean;
  /** Called with each verified identity (logging, metrics). */
  onVerified?: (identity: AttestedIdentity) => void;
}

/**
 * An https.Agent whose connections are handed to the request only after the server's attested
 * certificate passed `policy` (a failure is the request's 'error', an AttestationError naming the check).
 * Keep-alive sockets are verified once, when made.
 */
export class AttestedAgent extends Agent {
  readonly #policy: AttestedTlsPolicy;
  readonly #fresh: boolean;
  readonly #onVerified?: (identity: AttestedIdentity) => void;

  constructor({ policy, fresh, onVerified, ...options }: AttestedAgentOptions) {
    super({ ...options, rejectUnauthorized: false });
    this.#policy = policy;
    this.#fresh = fresh === true;
    this.#onVerified = onVerified;
  }

  override createConnection(
    options: ConnectionOptions,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex {
    const { policy, servername } = connectionPolicy({ ...this.#policy, fresh: this.#fresh });
    const socket = tlsConnect({
      ...options,
      ...(servername ? { servername } : {}),
      rejectUnauthorized: false,
    });
    verifyPeer(socket, policy, `${options.host}:${options.port}`).then(
      (identity) => {
        this.#onVerified?.(identity);
        callback?.(null, socket);
      },
      (err: Error) => {
        socket.destroy();
        callback?.(err, socket);
      },
    );
    // Returning nothing makes Node's agent wait for the callback (net.Agent's documented async form).
    return undefined as unknown as Duplex;
  }
}
