// Enclave side of attested TLS: one EC key pair made at start (its private key never leaves this
// process, except into the app's RAM-filesystem files when the app terminates TLS itself), and a
// certificate for it carrying an NSM document whose public_key is the certificate's key
// (certificate.ts). The certificate is re-issued before its document is older than plan.maxAgeMs; after
// each renewal the app's files are replaced and the app gets plan.files.reloadSignal.
//
// Ingress asks for the TLS context per connection: the current one, or (a nonce in the server name,
// sni-nonce.ts) a certificate made for this handshake whose document carries the client's nonce.
import { createHash, KeyObject } from 'node:crypto';
import { dirname } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import { decodeDocument } from '../attestation/document.ts';
import { derToPem } from '../encoding/pem.ts';
import { AttestedTlsIssueError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { attestedCertificates } from '../metrics.ts';
import type { Nsm } from '../nsm/types.ts';
import type { AttestedTlsPlan } from '../plan/attested-tls.ts';
import type { Service } from '../service.ts';
import type { RamDir } from '../system/ram-dir.ts';
import {
  type AttestedKey,
  buildAttestedCertificate,
  generateAttestedKey,
  KEY_PCR,
  keyPcrData,
} from './certificate.ts';
import { nonceFromServername } from './sni-nonce.ts';

export interface AttestedTlsDeps {
  nsm: Nsm;
  logger: Logger;
  /** Where the app's files are written (plan.files.dir inside it); required when plan.files is set. */
  ramDir?: () => Promise<Pick<RamDir, 'writeFile'>>;
  /** Sends a signal to the app, if one runs (the supervisor's); absent: nobody to tell. */
  signalApp?: (signal: NodeJS.Signals) => void;
  /** Clock in ms, for tests. */
  now?: () => number;
}

/** One issued certificate. */
export interface Issued {
  der: Buffer;
  pem: string;
  /** The document it carries, and that document's own timestamp (ms). */
  document: Uint8Array;
  documentTime: number;
  /** The NSM chain that signed the document, leaf first, PEM. */
  chainPem: string;
  context: SecureContext;
}

/** The file names in plan.files.dir. */
export const APP_FILES = {
  key: 'key.pem',
  cert: 'cert.pem',
  /** The NSM chain that signed the document, leaf first (for people and tools; TLS serves cert.pem). */
  chain: 'chain.pem',
  document: 'attestation.cbor',
} as const;

/** Renewal at this fraction of maxAgeMs leaves a quarter of it for a slow NSM or a retry. */
const RENEW_AT = 3 / 4;
/** After a failed renewal, try again this often (at most; a short max age retries sooner). */
const RETRY_MS = 5_000;
/** Nonce certificates made at once, and waiting; past that a handshake asking for one fails. */
const FRESH_CONCURRENCY = 4;
const FRESH_QUEUE = 64;
/** Clock skew allowed for clients whose clock is behind ours. */
const NOT_BEFORE_SKEW_MS = 5 * 60_000;

export interface AttestedTls extends Service {
  /** The app's environment: CLOISTER_TLS_{KEY,CERT,CHAIN}_FILE when plan.files is set. */
  readonly env: Record<string, string>;
  /** The current certificate (re-issued in place on renewal). */
  current(): Issued;
  /** Node's SNICallback: a nonce in the server name gets a certificate made now for it, else current(). */
  sniCallback(servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void;
  /** Absolute paths of the app's files (plan.files), for its environment; null without files. */
  files: { key: string; cert: string; chain: string; document: string } | null;
  /** Issue now (also what the timer does); resolves with the new certificate. */
  renew(): Promise<Issued>;
}

/** The app's environment naming its files (none without plan.files). */
function filesEnv(files: AttestedTls['files']): Record<string, string> {
  if (!files) return {};
  return {
    CLOISTER_TLS_KEY_FILE: files.key,
    CLOISTER_TLS_CERT_FILE: files.cert,
    CLOISTER_TLS_CHAIN_FILE: files.chain,
  };
}

function sha256(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/** Starts attested TLS: resolves once the first certificate exists (and the app's files are written). */
export async function startAttestedTls(plan: AttestedTlsPlan, deps: AttestedTlsDeps): Promise<AttestedTls> {
  const log = deps.logger.child({ component: 'attested-tls' });
  const now = deps.now ?? Date.now;
  if (plan.files && !deps.ramDir) {
    throw new Error('attested TLS: plan.files is set but no RAM directory was given');
  }
  const key: AttestedKey = await generateAttestedKey();
  const keyPem = KeyObject.from(key.keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  // Measure the key into KEY_PCR and lock it, before any document exists (certificate.ts, KEY_PCR).
  try {
    await deps.nsm.extendPcr(KEY_PCR, keyPcrData(key.spki));
    await deps.nsm.lockPcr(KEY_PCR);
  } catch (err) {
    throw new AttestedTlsIssueError(
      `cannot measure the TLS key into PCR${KEY_PCR} (is it locked, or used by the app?): ${(err as Error).message}`,
      { cause: err },
    );
  }

  async function issue(nonce: Buffer | null): Promise<Issued> {
    let document: Uint8Array;
    try {
      document = await deps.nsm.attestation({ public_key: key.spki, nonce });
    } catch (err) {
      throw new AttestedTlsIssueError(`the NSM did not attest the TLS key: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const t = now();
    const der = await buildAttestedCertificate({
      key,
      document,
      commonName: plan.commonName,
      dnsNames: plan.dnsNames,
      notBefore: new Date(t - NOT_BEFORE_SKEW_MS),
      notAfter: new Date(t + plan.maxAgeMs),
    });
    const pem = derToPem(der, 'CERTIFICATE');
    const decoded = decodeDocument(document);
    return {
      der,
      pem,
      document,
      documentTime: decoded.timestamp,
      chainPem: [decoded.certificate, ...[...decoded.cabundle].reverse()]
        .map((c) => derToPem(c, 'CERTIFICATE'))
        .join(''),
      context: createSecureContext({ key: keyPem, cert: pem }),
    };
  }

  /** The app's files, each replaced atomically; resolves with their absolute paths. */
  async function writeFiles(cert: Issued): Promise<AttestedTls['files']> {
    const f = plan.files;
    if (!f || !deps.ramDir) return null;
    const dir = await deps.ramDir();
    const owner = { uid: f.uid, gid: f.gid };
    const put = (name: string, data: string | Uint8Array, mode: number) =>
      dir.writeFile(`${f.dir}/${name}`, typeof data === 'string' ? Buffer.from(data) : data, {
        ...owner,
        mode,
      });
    // Key first, certificate last: an app that reloads on seeing cert.pem change finds its key there.
    const keyPath = await put(APP_FILES.key, keyPem, 0o400);
    const chainPath = await put(APP_FILES.chain, cert.chainPem, 0o444);
    const documentPath = await put(APP_FILES.document, cert.document, 0o444);
    const certPath = await put(APP_FILES.cert, cert.pem, 0o444);
    return { key: keyPath, chain: chainPath, document: documentPath, cert: certPath };
  }

  let renewals = 0;
  let current = await issue(null).catch((err) => {
    attestedCertificates.inc({ kind: 'renewal', result: 'failed' });
    throw err;
  });
  const files = await writeFiles(current);
  attestedCertificates.inc({ kind: 'renewal', result: 'ok' });
  log.info(
    {
      sha256: sha256(current.der),
      publicKeySha256: sha256(key.spki),
      documentTime: new Date(current.documentTime).toISOString(),
      files: files ? dirname(files.cert) : null,
    },
    'attested certificate issued',
  );

  let closed = false;
  let closing: Promise<void> | null = null;
  const close = (): Promise<void> => {
    closing ??= (async () => {
      closed = true;
      clearTimeout(timer);
      await renewing?.catch(() => {});
    })();
    return closing;
  };
  let timer: NodeJS.Timeout | undefined;
  let renewing: Promise<Issued> | null = null;

  const schedule = (delay: number) => {
    clearTimeout(timer);
    if (closed) return;
    timer = setTimeout(
      () => {
        renew().catch(() => {}); // logged in renew(); it reschedules itself
      },
      Math.max(0, delay),
    );
  };

  function renew(): Promise<Issued> {
    renewing ??= (async () => {
      try {
        const next = await issue(null);
        if (closed) return next;
        current = next;
        renewals++;
        await writeFiles(current);
        attestedCertificates.inc({ kind: 'renewal', result: 'ok' });
        log.info(
          {
            sha256: sha256(current.der),
            documentTime: new Date(current.documentTime).toISOString(),
            renewals,
          },
          'attested certificate renewed',
        );
        const signal = plan.files?.reloadSignal;
        if (signal && deps.signalApp) {
          deps.signalApp(signal);
          log.info({ signal }, 'app told to reload its TLS files');
        }
        schedule(current.documentTime + plan.maxAgeMs * RENEW_AT - now());
        return current;
      } catch (err) {
        attestedCertificates.inc({ kind: 'renewal', result: 'failed' });
        const age = now() - current.documentTime;
        log.error(
          { err, documentAgeMs: age, maxAgeMs: plan.maxAgeMs },
          'cannot renew the attested certificate; retrying (clients checking the age will refuse the old one once it is too old)',
        );
        schedule(Math.min(RETRY_MS, plan.maxAgeMs / 10));
        throw err;
      } finally {
        renewing = null;
      }
    })();
    return renewing;
  }
  schedule(current.documentTime + plan.maxAgeMs * RENEW_AT - now());

  // Certificates for a client's nonce: bounded, so a flood of handshakes cannot queue NSM calls for ever.
  let running = 0;
  const waiting: (() => void)[] = [];
  async function fresh(nonce: Buffer): Promise<SecureContext> {
    if (running >= FRESH_CONCURRENCY) {
      if (waiting.length >= FRESH_QUEUE)
        throw new AttestedTlsIssueError('too many nonce certificates pending');
      await new Promise<void>((r) => waiting.push(r));
    }
    running++;
    try {
      return (await issue(nonce)).context;
    } finally {
      running--;
      waiting.shift()?.();
    }
  }

  return {
    current: () => current,
    files,
    sniCallback(servername, cb) {
      const nonce = nonceFromServername(servername);
      if (!nonce) {
        cb(null, current.context);
        return;
      }
      fresh(nonce).then(
        (ctx) => {
          attestedCertificates.inc({ kind: 'nonce', result: 'ok' });
          cb(null, ctx);
        },
        (err: Error) => {
          attestedCertificates.inc({ kind: 'nonce', result: 'failed' });
          log.warn({ err }, 'cannot issue a certificate for a client nonce');
          cb(err);
        },
      );
    },
    renew,
    env: filesEnv(files),
    close,
    // Nothing to cut off: connections belong to ingress and the app. A renewal in flight ends on its own.
    destroy: () => close(),
  };
}
