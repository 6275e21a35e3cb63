// The attested TLS part of the plan (docs/attested-tls.md): on when an ingress port asks for
// `tls: attested` (cloister.yaml ingress.ports) or attested_tls.app_files is true; null otherwise.
import type { Config } from '../config/types.ts';

/** The folder inside the RAM directory that holds the app's key.pem, cert.pem and chain.pem. */
export const ATTESTED_TLS_DIR = 'attested-tls';

export interface AttestedTlsPlan {
  /** The served document is never older than this: the certificate is re-issued at 3/4 of it. */
  maxAgeMs: number;
  /** Subject CN of the certificate (the manifest's name). */
  commonName: string;
  /** subjectAltName dNSNames. */
  dnsNames: string[];
  /**
   * Files for an app that terminates TLS itself: written under <ram dir>/<dir>, owned by the app's
   * uid/gid; reloadSignal goes to the app after each renewal. null: no files.
   */
  files: {
    dir: string;
    uid: number | null;
    gid: number | null;
    reloadSignal: NodeJS.Signals | null;
  } | null;
}

/** Ingress ports whose TLS cloister terminates with the attested certificate. */
export function attestedPorts(config: Config): Set<number> {
  const ports = new Set<number>();
  for (const [port, p] of Object.entries(config.settings.ingress.ports)) {
    if (p.tls === 'attested') ports.add(Number(port));
  }
  return ports;
}

export function planAttestedTls(config: Config): AttestedTlsPlan | null {
  const a = config.settings.attested_tls;
  if (attestedPorts(config).size === 0 && !a.app_files) return null;
  const app = config.settings.app;
  return {
    maxAgeMs: a.max_age_ms,
    commonName: config.manifest.name,
    dnsNames: a.dns_names,
    files: a.app_files
      ? { dir: ATTESTED_TLS_DIR, uid: app.uid, gid: app.gid, reloadSignal: a.reload_signal }
      : null,
  };
}
