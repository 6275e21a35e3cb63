// What `cloister dev` hands the enclave side: a copy of the manifest and settings adjusted for this
// machine, written to a scratch config dir. Nothing of the user's files is changed.
//   - kms_proxy.endpoints[region] and, with boot-time secrets, cloister.yaml kms.endpoints[region] -> the
//     KMS emulator (unless --kms aws);
//   - egress.allow gets the emulator's 127.0.0.1:<port> if the policy would refuse it (and says so);
//   - ingress tls paths made absolute (the scratch dir has no tls/);
//   - settings: emulated transport, software NSM with the dev PCRs, quieter logs, the RAM directory
//     under /dev/shm (no tmpfs mounted on this machine), transparent egress off (this machine's network).
import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { egressPolicy } from '../config/egress.ts';
import { secretsToYaml } from '../config/secrets.ts';
import type { Config, Manifest, Settings } from '../config/types.ts';
import { resolveTlsMaterial } from '../plan/ingress.ts';
import { CID_HOST } from '../transport/types.ts';
import { VERSION } from '../version.ts';

/**
 * PCRs the emulated enclave reports, stable across runs like a real image's: PCR0 measures the "image"
 * (manifest + app command), PCR1 the "kernel and bootstrap" (cloister's version), PCR2 the "application"
 * (the app command). settings.nsm.pcrs, when given, win.
 */
export function devPcrs(config: Config, app: string[]): Record<string, string> {
  if (Object.keys(config.settings.nsm.pcrs).length > 0) return config.settings.nsm.pcrs;
  const h = (...parts: (string | Buffer)[]) => {
    const d = createHash('sha384');
    for (const p of parts) d.update(p).update('\0');
    return d.digest('hex');
  };
  let manifestBytes: Buffer;
  try {
    manifestBytes = readFileSync(config.manifestPath);
  } catch {
    manifestBytes = Buffer.from(JSON.stringify(config.manifest));
  }
  return {
    '0': h('cloister-dev PCR0', manifestBytes, ...app),
    '1': h('cloister-dev PCR1', VERSION),
    '2': h('cloister-dev PCR2', ...app),
  };
}

export interface DeriveOptions {
  config: Config;
  dir: string;
  vsockDir: string;
  enclaveCid: number;
  nsmState: string;
  pcrs: Record<string, string>;
  kms: { url: string; region: string } | null;
  logLevel: Settings['log']['level'];
}

export interface Derived {
  configDir: string;
  /** Human notes about what was changed, for the startup banner. */
  notes: string[];
}

export function deriveEnclaveConfig(o: DeriveOptions): Derived {
  const notes: string[] = [];
  const m: Manifest = structuredClone(o.config.manifest);
  const secrets = o.config.settings.secrets.length > 0;
  if (o.kms && (m.kms_proxy || secrets)) {
    if (m.kms_proxy) {
      m.kms_proxy.endpoints = { ...(m.kms_proxy.endpoints ?? {}), [o.kms.region]: o.kms.url };
    }
    const u = new URL(o.kms.url);
    const port = Number(u.port);
    const allow = m.egress?.allow ?? [];
    // The user's own policy, as loaded (compiled once, with the config).
    const verdict = egressPolicy(o.config.manifest).check(u.hostname, port);
    if (!verdict.allowed) {
      m.egress = { ...(m.egress ?? {}), allow: [...allow, `${u.hostname}:${port}`] };
      notes.push(`egress.allow += ${u.hostname}:${port} (the KMS emulator)`);
    }
  }
  for (const entry of m.ingress ?? []) {
    if (!entry.tls) continue;
    const t = resolveTlsMaterial(o.config.configDir, entry);
    entry.tls = { key_file: t.keyPath, cert_file: t.certPath };
  }
  const s: Settings = structuredClone(o.config.settings);
  s.transport = { kind: 'emulated', dir: o.vsockDir, enclave_cid: o.enclaveCid, parent_cid: CID_HOST };
  s.nsm = { ...s.nsm, kind: 'software', state_dir: o.nsmState, pcrs: o.pcrs };
  s.log.level = o.logLevel;
  // The boot-time secrets decrypt with the emulator too (with or without a KMS proxy).
  if (o.kms && secrets) s.kms = { ...s.kms, endpoints: { ...s.kms.endpoints, [o.kms.region]: o.kms.url } };
  // No mount on the developer's machine: a private directory under /dev/shm, removed at exit.
  s.ram_dir = { ...s.ram_dir, path: null, mount: 'never' };
  // Transparent egress changes the routes and nat table of the network namespace it runs in: here that
  // is the developer's machine, whose own traffic it would capture. The app keeps the proxy variables.
  if (s.transparent.enabled) {
    s.transparent = { ...s.transparent, enabled: false };
    notes.push(
      "transparent egress is off in dev mode (it would redirect this machine's own traffic); the app gets the proxy variables",
    );
  }
  mkdirSync(o.dir, { recursive: true });
  // yaml's stringify drops undefined keys; the schema accepts every key we write back. Secrets are typed
  // in Settings: written back in their cloister.yaml form (file paths are absolute already).
  writeFileSync(join(o.dir, 'enclaver.yaml'), stringify(m));
  writeFileSync(join(o.dir, 'cloister.yaml'), stringify({ ...s, secrets: secretsToYaml(s.secrets) }));
  return { configDir: o.dir, notes };
}
