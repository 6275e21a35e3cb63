// The ingress part of the plan: per port, the TLS context (loaded once, at start-up: a missing key fails
// the boot, not a client) and whether a PROXY protocol header comes first.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createSecureContext, type SecureContext } from 'node:tls';
import type { Config, IngressEntry } from '../config/types.ts';
import { secretError } from '../errors.ts';
import { attestedPorts } from './attested-tls.ts';

export interface PortPlan {
  port: number;
  /** TLS with the manifest's key and certificate (loaded once), or null (plain TCP, or see below). */
  secureContext: SecureContext | null;
  /**
   * The port's TLS key is a boot-time secret (cloister.yaml secrets[].targets.ingress_tls): its name and
   * the certificate (read at plan time). withSecretTlsKeys makes the context once the secrets are ready;
   * ingress starts after that.
   */
  keySecret?: { name: string; cert: Buffer; certPath: string };
  /** TLS with the enclave's attested certificate (src/attested-tls/), renewed while running. */
  attestedTls?: boolean;
  /** Overrides IngressPlan.proxyProtocol for this port (the metrics port never takes a header). */
  proxyProtocol?: boolean;
}

export interface IngressPlan {
  ports: PortPlan[];
  proxyProtocol: boolean;
  /** PROXY v2 TLV types passed on to the app (ingress.proxy_protocol_tlvs); every other TLV is stripped. */
  proxyTlvs?: readonly number[];
  upstreamRetryMs: number;
  closeGraceMs?: number;
}

export interface TlsMaterial {
  keyPath: string;
  certPath: string;
}

/**
 * Where the key and certificate of a TLS ingress port are. The manifest's tls.key_file/cert_file
 * (relative to the config dir) win; odyn ignored them and always read
 * <config-dir>/tls/server/<port>/{key,cert}.pem, so that is the fallback when the named files are absent.
 */
export function resolveTlsMaterial(configDir: string, entry: IngressEntry): TlsMaterial {
  const tls = entry.tls;
  if (!tls) throw new Error(`ingress port ${entry.listen_port} has no tls block`);
  const named = { keyPath: resolve(configDir, tls.key_file), certPath: resolve(configDir, tls.cert_file) };
  if (existsSync(named.keyPath) && existsSync(named.certPath)) return named;
  const dir = resolve(configDir, 'tls', 'server', String(entry.listen_port));
  const legacy = { keyPath: resolve(dir, 'key.pem'), certPath: resolve(dir, 'cert.pem') };
  if (existsSync(legacy.keyPath) && existsSync(legacy.certPath)) return legacy;
  throw new Error(
    `ingress port ${entry.listen_port}: TLS key/certificate not found at ${named.keyPath} and ${named.certPath}` +
      ` nor at odyn's location ${legacy.keyPath} and ${legacy.certPath}`,
  );
}

/** The certificate of a port whose key is a boot-time secret: tls.cert_file, else odyn's location. */
function resolveCertPath(configDir: string, entry: IngressEntry): string {
  const named = resolve(configDir, entry.tls!.cert_file);
  if (existsSync(named)) return named;
  const legacy = resolve(configDir, 'tls', 'server', String(entry.listen_port), 'cert.pem');
  return existsSync(legacy) ? legacy : named;
}

/**
 * The ingress plan with the TLS contexts of the ports whose key is a boot-time secret, made from the
 * decrypted keys (port -> PEM). A port whose key is missing or does not fit its certificate fails the
 * start (SecretError), as a bad key file does.
 */
export function withSecretTlsKeys(plan: IngressPlan, keys: ReadonlyMap<number, Buffer>): IngressPlan {
  const ports = plan.ports.map((p) => {
    if (!p.keySecret) return p;
    const { name, cert, certPath } = p.keySecret;
    const key = keys.get(p.port);
    if (!key) {
      throw secretError(
        'target',
        name,
        'CLO_ERR_SECRET_TARGET',
        `ingress port ${p.port}: its TLS key, secret ${name}, is not ready`,
      );
    }
    try {
      return {
        port: p.port,
        secureContext: createSecureContext({ key, cert }),
        ...(p.proxyProtocol === undefined ? {} : { proxyProtocol: p.proxyProtocol }),
      };
    } catch (err) {
      // OpenSSL's reason only: never the key.
      throw secretError(
        'target',
        name,
        'CLO_ERR_SECRET_TARGET',
        `ingress port ${p.port}: secret ${name} is not a private key for certificate ${certPath}: ${(err as Error).message}`,
      );
    }
  });
  return { ...plan, ports };
}

function loadSecureContext(configDir: string, entry: IngressEntry): SecureContext {
  const m = resolveTlsMaterial(configDir, entry);
  try {
    return createSecureContext({ key: readFileSync(m.keyPath), cert: readFileSync(m.certPath) });
  } catch (err) {
    // Never echo key material: name the files and OpenSSL's reason only.
    throw new Error(
      `ingress port ${entry.listen_port}: cannot use TLS key ${m.keyPath} / certificate ${m.certPath}: ${(err as Error).message}`,
    );
  }
}

/**
 * The ports ingress serves: the manifest's ingress entries, plus api.metrics_port, which is also served
 * over the transport so the host side can expose it (`cloister host --metrics-port`).
 */
export function planIngress(config: Config): IngressPlan {
  const { settings } = config;
  const byPort = new Map<number, PortPlan>();
  const secretKeys = new Map<number, string>();
  for (const s of settings.secrets) {
    if (s.targets.ingress_tls !== undefined) secretKeys.set(s.targets.ingress_tls, s.name);
  }
  const attested = attestedPorts(config);
  for (const entry of config.manifest.ingress ?? []) {
    const secret = entry.tls ? secretKeys.get(entry.listen_port) : undefined;
    if (secret !== undefined) {
      const certPath = resolveCertPath(config.configDir, entry);
      let cert: Buffer;
      try {
        cert = readFileSync(certPath);
      } catch (err) {
        throw new Error(
          `ingress port ${entry.listen_port}: cannot read TLS certificate ${certPath}: ${(err as Error).message}`,
        );
      }
      byPort.set(entry.listen_port, {
        port: entry.listen_port,
        secureContext: null,
        keySecret: { name: secret, cert, certPath },
      });
      continue;
    }
    byPort.set(entry.listen_port, {
      port: entry.listen_port,
      secureContext: entry.tls ? loadSecureContext(config.configDir, entry) : null,
      ...(attested.has(entry.listen_port) ? { attestedTls: true } : {}),
    });
  }
  const ports = [...byPort.values()];
  const metricsPort = settings.api.metrics_port;
  if (metricsPort !== null && !byPort.has(metricsPort)) {
    ports.push({ port: metricsPort, secureContext: null, proxyProtocol: false });
  }
  return {
    ports,
    proxyProtocol: settings.ingress.proxy_protocol,
    proxyTlvs: settings.ingress.proxy_protocol_tlvs,
    upstreamRetryMs: settings.ingress.upstream_retry_ms,
    closeGraceMs: settings.app.stop_grace_ms,
  };
}
