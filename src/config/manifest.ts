// Enclaver's enclaver.yaml, validated key by key (docs/reference/enclaver.md, "Manifest"). Accepts both the
// E5 (`sources.supervisor`, `sources.wrapper`) and E6 (`sources.odyn`, `sources.sleeve`, `spire`)
// spellings, so a manifest valid for either Enclaver release is valid here. Unlike odyn, the
// cross-field rules (port clashes, KMS proxy without egress, invalid egress rules) fail at load.
import { isAbsolute, resolve } from 'node:path';
import type { Node } from 'yaml';
import { APP_LOG_PORT, DEFAULT_EGRESS_PROXY_PORT, STATUS_PORT } from '../constants.ts';
import { PolicyError } from '../policy/policy.ts';
import { egressEnabled, egressPolicy } from './egress.ts';
import { dict, int, list, obj, opt, port, refine, req, str, strictStr, type YamlSource } from './schema.ts';
import type { Manifest } from './types.ts';

/** odyn's NO_EGRESS_ERROR, word for word (bin/odyn/kms_proxy.rs). */
export const KMS_WITHOUT_EGRESS =
  'KMS proxy is configured but egress is not. Configure egress allow policy to access the IMDS at 169.254.169.254 and the AWS KMS endpoint';

export { DEFAULT_EGRESS_PROXY_PORT };

/** `host[:port]` (odyn's form, scheme https) or `http(s)://host[:port]` (cloister: emulators, private endpoints). */
export function checkKmsEndpoint(value: string): string | undefined {
  const bad = `"${value}" is not a host[:port] authority or an http(s)://host[:port] URL`;
  const scheme = /^([a-z][a-z0-9+.-]*):\/\//i.exec(value)?.[1]?.toLowerCase();
  if (scheme !== undefined && scheme !== 'http' && scheme !== 'https')
    return `${bad} (scheme must be http or https)`;
  const authority = scheme === undefined ? value : value.slice(scheme.length + 3).replace(/\/$/, '');
  if (authority === '' || /[/?#@\s\\]/.test(authority)) return bad;
  let url: URL;
  try {
    url = new URL(`https://${authority}`);
  } catch {
    return bad;
  }
  if (url.port === '0' || (url.hostname === '' && url.host === '')) return bad;
  return undefined;
}

const tls = obj({ key_file: req(str()), cert_file: req(str()) });

const manifestSchema = obj({
  version: req(str()),
  name: req(str()),
  target: req(str()),
  sources: req(
    obj({
      app: req(str()),
      supervisor: opt(str()),
      wrapper: opt(str()),
      odyn: opt(str()),
      sleeve: opt(str()),
    }),
  ),
  signature: opt(obj({ certificate: req(str()), key: req(str()) })),
  ingress: opt(
    list(
      obj({ listen_port: req(port()), tls: opt(tls) }),
      'a list of ingress entries (mappings with keys listen_port, tls)',
    ),
  ),
  egress: opt(
    obj({
      proxy_port: opt(port()),
      allow: opt(list(strictStr(), 'a list of strings')),
      deny: opt(list(strictStr(), 'a list of strings')),
    }),
  ),
  defaults: opt(
    obj({
      cpu_count: opt(int({ min: 1, expected: 'an integer >= 1 (at least 1 CPU is required)' })),
      memory_mb: opt(int({ min: 64, expected: 'an integer >= 64 (at least 64 MiB)' })),
    }),
  ),
  kms_proxy: opt(
    obj({
      listen_port: req(port()),
      endpoints: opt(
        dict(
          refine(str(), checkKmsEndpoint),
          (region) => (region === '' ? 'region names must not be empty' : undefined),
          'a mapping of region names to KMS endpoints',
        ),
      ),
    }),
  ),
  api: opt(obj({ listen_port: req(port()) })),
  spire: opt(
    obj({
      server_addr: opt(str()),
      ca_cert: opt(str()),
      trust_domain: opt(str()),
      svid_dir: opt(str()),
      workload_api_addr: opt(str()),
    }),
  ),
});

export { egressEnabled };

/** A TCP port cloister will bind inside the enclave, and where it comes from. */
export interface PortUse {
  port: number;
  keyPath: string;
  /** How a message names it, e.g. `ingress[0].listen_port (line 7)`. */
  label: string;
  node: Node | undefined;
  /** The egress proxy's implied default port (not written in the file). */
  isDefault?: boolean;
}

/** Every 127.0.0.1 port the manifest makes cloister (or the app, for ingress) listen on. */
export function manifestPorts(m: Partial<Manifest>, src: YamlSource): PortUse[] {
  const uses: PortUse[] = [];
  const add = (port: number | undefined, keyPath: string, label?: string, node = src.nodes.get(keyPath)) => {
    if (port === undefined) return;
    uses.push({
      port,
      keyPath,
      node,
      label: label ?? `${keyPath} (line ${src.lineOf(node)})`,
      isDefault: !!label,
    });
  };
  for (const [i, entry] of (m.ingress ?? []).entries()) add(entry?.listen_port, `ingress[${i}].listen_port`);
  if (m.egress && egressEnabled(m)) {
    if (m.egress.proxy_port !== undefined) add(m.egress.proxy_port, 'egress.proxy_port');
    else
      add(
        DEFAULT_EGRESS_PROXY_PORT,
        'egress.proxy_port',
        `the egress proxy (egress.proxy_port defaults to ${DEFAULT_EGRESS_PROXY_PORT} when egress.allow is set)`,
        src.keyNodes.get('egress'),
      );
  }
  add(m.kms_proxy?.listen_port, 'kms_proxy.listen_port');
  add(m.api?.listen_port, 'api.listen_port');
  return uses;
}

/** Reports each port that an earlier entry already claimed, naming both places. */
export function checkPortClashes(uses: PortUse[], src: YamlSource): void {
  const first = new Map<number, PortUse>();
  for (const use of uses) {
    const prev = first.get(use.port);
    if (!prev) first.set(use.port, use);
    else if (use.isDefault) {
      src.report(
        use.node,
        use.keyPath,
        `the egress proxy's default port ${use.port} is already used by ${prev.label}; set egress.proxy_port to a free port`,
      );
    } else src.report(use.node, use.keyPath, `port ${use.port} is already used by ${prev.label}`);
  }
}

/** Validates the parsed manifest document; problems are recorded on `src`. */
export function parseManifest(src: YamlSource, manifestDir: string): Manifest {
  if (src.root === null && src.errors.length === 0) {
    src.report(
      0,
      '',
      `the manifest is empty; expected a mapping with keys version, name, target, sources, ...`,
    );
  }
  if (src.root === null) return {} as Manifest;
  const parsed = manifestSchema.parse(src.root, [], src);
  if (typeof parsed !== 'object') return {} as Manifest;
  const m = parsed as unknown as Manifest;

  // One image, two spellings (Enclaver E5 vs E6): refuse rather than guess which one wins.
  for (const [e5, e6] of [
    ['supervisor', 'odyn'],
    ['wrapper', 'sleeve'],
  ] as const) {
    if (m.sources?.[e5] !== undefined && m.sources[e6] !== undefined) {
      const n5 = src.nodes.get(`sources.${e5}`);
      const n6 = src.nodes.get(`sources.${e6}`);
      const [later, earlier, laterName, earlierName] =
        src.lineOf(n6) >= src.lineOf(n5) ? [n6, n5, e6, e5] : [n5, n6, e5, e6];
      src.report(
        later,
        `sources.${laterName}`,
        `sources.${laterName} and sources.${earlierName} (line ${src.lineOf(earlier)}) are the same image ` +
          `(${e6} is Enclaver 0.6's name for ${e5}); keep only one`,
      );
    }
  }

  if (m.kms_proxy !== undefined && !egressEnabled(m)) {
    src.report(src.keyNodes.get('kms_proxy'), 'kms_proxy', KMS_WITHOUT_EGRESS);
  }

  checkEgressRules(m, src);
  checkPortClashes(manifestPorts(m, src), src);
  for (const [i, entry] of (m.ingress ?? []).entries()) {
    const p = entry?.listen_port;
    if (p === STATUS_PORT || p === APP_LOG_PORT) {
      src.report(
        src.nodes.get(`ingress[${i}].listen_port`),
        `ingress[${i}].listen_port`,
        `port ${p} is reserved: ingress ports are also vsock ports, and the enclave serves its status on vsock ${STATUS_PORT} and app logs on ${APP_LOG_PORT}`,
      );
    }
  }
  // With problems the caller throws; partial entries must not reach resolvePaths.
  return src.errors.length === 0 ? resolvePaths(m, manifestDir) : m;
}

function checkEgressRules(m: Manifest, src: YamlSource): void {
  const allow = m.egress?.allow ?? [];
  const deny = m.egress?.deny ?? [];
  // A hole is an item that already failed (not a string): compiling the rest would shift indexes.
  if (allow.includes(undefined as unknown as string) || deny.includes(undefined as unknown as string)) return;
  try {
    egressPolicy(m);
  } catch (err) {
    if (!(err instanceof PolicyError)) throw err;
    for (const e of err.errors) {
      const keyPath = `egress.${e.list}[${e.index}]`;
      src.report(src.nodes.get(keyPath) ?? src.nodes.get(`egress.${e.list}`), keyPath, e.message);
    }
  }
}

/** Makes file paths absolute against the manifest's directory; everything else stays as written. */
function resolvePaths(m: Manifest, dir: string): Manifest {
  const abs = (p: string) => (isAbsolute(p) ? p : resolve(dir, p));
  if (m.signature) m.signature = { certificate: abs(m.signature.certificate), key: abs(m.signature.key) };
  if (m.ingress) {
    m.ingress = m.ingress.map((e) =>
      e?.tls ? { ...e, tls: { key_file: abs(e.tls.key_file), cert_file: abs(e.tls.cert_file) } } : e,
    );
  }
  return m;
}
