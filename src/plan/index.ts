// The runtime plan: every decision the services share, made once from the validated Config
// (enclaver.yaml + cloister.yaml + flags) before any of them starts. Services get their part of it and
// do not re-derive from the manifest what the plan already decided:
//
//   is egress on, and on which port         plan.egress (null: off), one answer for every service
//   the egress policy                       plan.egress.policy, compiled once (src/config/egress.ts)
//   the relay's deny ranges                 prepared inside the compiled policy, not per tunnel
//   ingress ports, TLS contexts, PROXY v2   plan.ingress (src/plan/ingress.ts)
//   which loopback servers run              plan.kms, plan.api, plan.metrics (null: not started)
//   where files that must stay in RAM go    plan.ramDir (src/system/ram-dir.ts)
//   boot-time secrets, and which ingress     plan.secrets (src/secrets/); plan.ingress.ports[].keySecret
//   TLS keys are among them
//   attested TLS: renewal, names, app files  plan.attestedTls (src/plan/attested-tls.ts; null: off)
import { egressEnabled, egressPolicy } from '../config/egress.ts';
import type { Config, SecretSpec, Settings } from '../config/types.ts';
import { DEFAULT_EGRESS_PROXY_PORT } from '../constants.ts';
import { TransparentSetupError } from '../errors.ts';
import type { Policy } from '../policy/policy.ts';
import type { RamDirOptions } from '../system/ram-dir.ts';
import { type AttestedTlsPlan, planAttestedTls } from './attested-tls.ts';
import { type IngressPlan, planIngress } from './ingress.ts';

export type { AttestedTlsPlan } from './attested-tls.ts';

export type { IngressPlan, PortPlan } from './ingress.ts';

/** Transparent egress (cloister.yaml `transparent`), part of the egress plan: null when off. */
export interface TransparentPlan {
  /** Who resolves allowed names for the DNS stub. */
  resolver: { kind: 'relay' } | { kind: 'doh'; url: URL; host: string; port: number; caFile: string | null };
  /** Check a name-allowed connection's TLS SNI / HTTP Host against the names bound to its address. */
  checkSni: boolean;
}

export interface EgressPlan {
  /** 127.0.0.1 port of the egress proxy: egress.proxy_port, else DEFAULT_EGRESS_PROXY_PORT. */
  port: number;
  /** The CID the host relay is dialled at (transport.parent_cid; 2, the parent instance, by default). */
  parentCid: number;
  policy: Policy;
  /** How many allow and deny rules (for the start-up log line). */
  rules: { allow: number; deny: number };
  settings: Settings['egress'];
  transparent: TransparentPlan | null;
}

export interface KmsPlan {
  /** kms_proxy.listen_port. */
  port: number;
  /** kms_proxy.endpoints: region -> endpoint override. */
  endpoints: Record<string, string>;
  /** The egress policy KMS and IMDS are reached through (for the start-up check); null when egress is off. */
  egressPolicy: Policy | null;
  settings: Settings['kms'];
}

/** What the boot-time secrets (src/secrets/) need. */
export interface SecretsPlan {
  secrets: SecretSpec[];
  /** kms_proxy.endpoints overlaid with cloister.yaml kms.endpoints. */
  kmsEndpoints: Record<string, string>;
  /** Timeout of each AWS call (kms.upstream_timeout_ms). */
  timeoutMs: number;
  /** How long to wait for the RSA recipient key (kms.ready_wait_ms). */
  readyWaitMs: number;
  /** The app's uid/gid: owner of the files. */
  owner: { uid: number | null; gid: number | null };
}

export interface RuntimePlan {
  /** null: egress is off (no allow rule), so no proxy runs and the app gets no proxy variables. */
  egress: EgressPlan | null;
  kms: KmsPlan | null;
  /** The attestation API (api.listen_port), or null. */
  api: { port: number } | null;
  /** /healthz and /metrics (cloister.yaml api.metrics_port), or null. */
  metrics: { port: number } | null;
  ingress: IngressPlan;
  /** The RAM directory (cloister.yaml ram_dir): opened only when something writes a file there. */
  ramDir: RamDirOptions;
  /** Boot-time secrets (cloister.yaml secrets), or null when there are none. */
  secrets: SecretsPlan | null;
  /** The enclave's attested TLS certificate (for ingress ports and the app's files), or null. */
  attestedTls: AttestedTlsPlan | null;
}

/** The egress part alone (null when egress is off). */
export function planEgress(config: Config): EgressPlan | null {
  const m = config.manifest;
  if (!egressEnabled(m)) return null;
  const policy = egressPolicy(m);
  return {
    port: m.egress?.proxy_port ?? DEFAULT_EGRESS_PROXY_PORT,
    parentCid: config.settings.transport.parent_cid,
    policy,
    rules: { allow: m.egress?.allow?.length ?? 0, deny: m.egress?.deny?.length ?? 0 },
    settings: config.settings.egress,
    transparent: planTransparent(config.settings.transparent, policy),
  };
}

/** The transparent part (null when off). Throws when the DoH server is not allowed by the egress policy. */
export function planTransparent(t: Settings['transparent'], policy: Policy): TransparentPlan | null {
  if (!t.enabled) return null;
  const checkSni = t.check_sni;
  if (t.resolver === 'relay' || t.doh_url === null) return { resolver: { kind: 'relay' }, checkSni };
  const url = new URL(t.doh_url);
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = url.port === '' ? 443 : Number(url.port);
  // The DoH server is reached through the same egress path as the app's traffic: one policy decides both.
  const d = policy.check(host, port);
  if (!d.allowed)
    throw new TransparentSetupError(
      `transparent.doh_url ${t.doh_url}: the DoH server must be allowed by egress.allow (${d.reason})`,
    );
  return { resolver: { kind: 'doh', url, host: d.target!, port, caFile: t.doh_ca_file }, checkSni };
}

/** The KMS proxy part alone (null when the manifest has no kms_proxy). */
export function planKms(config: Config): KmsPlan | null {
  const kp = config.manifest.kms_proxy;
  if (!kp) return null;
  return {
    port: kp.listen_port,
    endpoints: kp.endpoints ?? {},
    egressPolicy: egressEnabled(config.manifest) ? egressPolicy(config.manifest) : null,
    settings: config.settings.kms,
  };
}

/** Where files that must stay in RAM go (src/system/ram-dir.ts). */
export function planRamDir(config: Config): RamDirOptions {
  const r = config.settings.ram_dir;
  return { path: r.path, mount: r.mount, sizeBytes: r.size_mb * 1024 * 1024 };
}

/** The boot-time secrets (null: none). They use the KMS proxy's endpoints and timeouts. */
export function planSecrets(config: Config): SecretsPlan | null {
  const { settings } = config;
  if (settings.secrets.length === 0) return null;
  return {
    secrets: settings.secrets,
    // cloister.yaml's kms.endpoints over the manifest's kms_proxy.endpoints (the KMS proxy's).
    kmsEndpoints: { ...(config.manifest.kms_proxy?.endpoints ?? {}), ...settings.kms.endpoints },
    timeoutMs: settings.kms.upstream_timeout_ms,
    readyWaitMs: settings.kms.ready_wait_ms,
    owner: { uid: settings.app.uid, gid: settings.app.gid },
  };
}

/** The whole plan. Throws when a TLS key or certificate of an ingress port cannot be loaded. */
export function buildPlan(config: Config): RuntimePlan {
  const egress = planEgress(config);
  const { api } = config.manifest;
  const metricsPort = config.settings.api.metrics_port;
  return {
    egress,
    kms: planKms(config),
    api: api ? { port: api.listen_port } : null,
    metrics: metricsPort === null ? null : { port: metricsPort },
    ingress: planIngress(config),
    ramDir: planRamDir(config),
    secrets: planSecrets(config),
    attestedTls: planAttestedTls(config),
  };
}

export { planIngress, withSecretTlsKeys } from './ingress.ts';
