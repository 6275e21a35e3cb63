// cloister.yaml: cloister's own settings, in a file beside enclaver.yaml so that the manifest stays
// valid for Enclaver. Every key is optional; absent keys take DEFAULT_SETTINGS (src/config/types.ts).
import { isAbsolute, resolve } from 'node:path';
import { checkKmsEndpoint } from './manifest.ts';
import {
  bool,
  dict,
  int,
  list,
  nullable,
  obj,
  oneOf,
  opt,
  port,
  refine,
  str,
  type YamlSource,
} from './schema.ts';
import { secretsSchema, toSecretSpecs } from './secrets.ts';
import { DEFAULT_SETTINGS, type Settings } from './types.ts';

/** Partial settings, section by section: what cloister.yaml or command-line flags provide. */
export type SettingsOverrides = { [S in Exclude<keyof Settings, 'secrets'>]?: Partial<Settings[S]> } & {
  secrets?: Settings['secrets'];
};

const ms = (min = 0) => int({ min, expected: `a duration in milliseconds (an integer >= ${min})` });

const settingsSchema = obj({
  app: opt(
    obj({
      uid: opt(nullable(int({ min: 0, max: 0xfffffffe }))),
      gid: opt(nullable(int({ min: 0, max: 0xfffffffe }))),
      restart: opt(oneOf(['never', 'on-failure', 'always'])),
      restart_backoff_ms: opt(ms()),
      restart_backoff_max_ms: opt(ms()),
      max_restarts: opt(nullable(int({ min: 0 }))),
      stop_grace_ms: opt(ms()),
    }),
  ),
  log: opt(
    obj({
      buffer_bytes: opt(int({ min: 0, max: 1024 * 1024 * 1024 })),
      level: opt(oneOf(['trace', 'debug', 'info', 'warn', 'error'])),
    }),
  ),
  transport: opt(
    obj({
      kind: opt(oneOf(['vsock', 'emulated'])),
      dir: opt(nullable(str())),
      // 0-2 are the hypervisor, local and host CIDs; 0xffffffff is VMADDR_CID_ANY.
      enclave_cid: opt(int({ min: 3, max: 0xfffffffe })),
      // 1 (VMADDR_CID_LOCAL) is allowed: the kernel lab's guest reaches its own host side over loopback.
      parent_cid: opt(int({ min: 1, max: 0xfffffffe })),
    }),
  ),
  egress: opt(
    obj({
      connect_timeout_ms: opt(ms(1)),
      header_timeout_ms: opt(ms(1)),
      idle_timeout_ms: opt(ms(1)),
      max_header_bytes: opt(int({ min: 1024, max: 1024 * 1024 })),
      max_tunnels: opt(int({ min: 1 })),
    }),
  ),
  transparent: opt(
    obj({
      enabled: opt(bool()),
      resolver: opt(oneOf(['relay', 'doh'])),
      doh_url: opt(
        nullable(
          refine(str(), (v) => {
            try {
              const u = new URL(v);
              return u.protocol === 'https:' && u.username === '' && u.password === ''
                ? undefined
                : 'must be an https URL without user or password';
            } catch {
              return 'must be an https URL (https://resolver.example/dns-query)';
            }
          }),
        ),
      ),
      doh_ca_file: opt(nullable(str())),
      check_sni: opt(bool()),
    }),
  ),
  ingress: opt(
    obj({
      upstream_retry_ms: opt(ms()),
      proxy_protocol: opt(bool()),
      // PP2_TYPE_CRC32C covers the whole header, which cloister rewrites: a kept checksum would be wrong.
      proxy_protocol_tlvs: opt(
        list(
          refine(int({ min: 0, max: 255, expected: 'a PROXY v2 TLV type (an integer 0-255)' }), (v) =>
            v === 0x03
              ? 'type 3 (CRC32C) cannot be passed on: cloister rewrites the header it covers'
              : undefined,
          ),
        ),
      ),
      // Keyed by ingress port; that port must be in enclaver.yaml's ingress list (checked in load.ts).
      ports: opt(
        dict(
          obj({ tls: opt(oneOf(['attested'])) }),
          (k) => (/^[1-9]\d{0,4}$/.test(k) && Number(k) <= 65535 ? undefined : `"${k}" is not a port number`),
          'a mapping of ingress ports to {tls: attested}',
        ),
      ),
    }),
  ),
  kms: opt(
    obj({
      ready_wait_ms: opt(ms()),
      upstream_timeout_ms: opt(ms(1)),
      // Same form as the manifest's kms_proxy.endpoints: region -> host[:port] or http(s) URL.
      endpoints: opt(dict(refine(str(), checkKmsEndpoint))),
    }),
  ),
  streams: opt(obj({ max_readers: opt(int({ min: 1, max: 1024 })) })),
  api: opt(obj({ metrics_port: opt(nullable(port())) })),
  secrets: opt(secretsSchema),
  ram_dir: opt(
    obj({
      path: opt(nullable(str())),
      mount: opt(oneOf(['auto', 'never'])),
      size_mb: opt(int({ min: 1, max: 1024 * 1024 })),
    }),
  ),
  nsm: opt(
    obj({
      kind: opt(oneOf(['device', 'software'])),
      device_path: opt(str()),
      state_dir: opt(nullable(str())),
      // NSM PCRs are SHA-384: 48 bytes, 96 hex digits. Indexes 0..31 (the NSM's PCR count).
      pcrs: opt(
        dict(
          refine(str(), (v) =>
            /^[0-9a-fA-F]{96}$/.test(v) ? undefined : 'must be 96 hex digits (a 48-byte SHA-384 PCR value)',
          ),
          (k) => (/^(?:[0-9]|[12][0-9]|3[01])$/.test(k) ? undefined : `"${k}" is not a PCR index (0..31)`),
          'a mapping of PCR indexes (0..31) to 96-hex-digit values',
        ),
      ),
    }),
  ),
  attested_tls: opt(
    obj({
      // The NSM's own certificate under the document lives 3 h: a document older than 2 h could outlive it.
      max_age_ms: opt(
        int({ min: 1000, max: 7_200_000, expected: 'a duration in milliseconds (1000..7200000)' }),
      ),
      dns_names: opt(list(str())),
      app_files: opt(bool()),
      reload_signal: opt(nullable(oneOf(['SIGHUP', 'SIGUSR1', 'SIGUSR2']))),
    }),
  ),
});

/** Deep-enough merge: each section of `partial` over the same section of `base`; undefined keeps base. */
export function mergeSettings(base: Settings, partial: SettingsOverrides): Settings {
  const out = structuredClone(base);
  for (const section of Object.keys(partial) as (keyof Settings)[]) {
    const over = partial[section];
    if (over === undefined) continue;
    if (!Object.hasOwn(base, section)) throw new Error(`unknown settings section "${section}"`);
    if (Array.isArray(over)) {
      // A list (secrets) replaces the default list whole.
      (out as unknown as Record<string, unknown>)[section] = structuredClone(over);
      continue;
    }
    const target = out[section] as unknown as Record<string, unknown>;
    for (const [k, v] of Object.entries(over)) if (v !== undefined) target[k] = structuredClone(v);
  }
  return out;
}

/** Validates cloister.yaml and merges it over the defaults; problems are recorded on `src`. */
export function parseSettings(src: YamlSource, settingsDir: string): Settings {
  // An empty file (or one with only comments) is the same as no file.
  if (src.root === null) return structuredClone(DEFAULT_SETTINGS);
  const parsed = settingsSchema.parse(src.root, [], src);
  if (typeof parsed !== 'object') return structuredClone(DEFAULT_SETTINGS);
  const { secrets, ...sections } = parsed as Record<string, unknown>;
  const s = mergeSettings(DEFAULT_SETTINGS, sections as SettingsOverrides);
  if (Array.isArray(secrets)) s.secrets = toSecretSpecs(secrets, src, settingsDir);

  if (s.app.restart_backoff_max_ms < s.app.restart_backoff_ms) {
    const at = src.nodes.has('app.restart_backoff_max_ms')
      ? 'app.restart_backoff_max_ms'
      : 'app.restart_backoff_ms';
    src.report(
      src.nodes.get(at),
      at,
      `restart_backoff_max_ms (${s.app.restart_backoff_max_ms}) must be >= restart_backoff_ms (${s.app.restart_backoff_ms})`,
    );
  }
  // Relative directories mean "beside cloister.yaml", not "wherever cloister was started".
  const abs = (p: string | null) => (p === null || isAbsolute(p) ? p : resolve(settingsDir, p));
  s.transport.dir = abs(s.transport.dir);
  s.nsm.state_dir = abs(s.nsm.state_dir);
  s.transparent.doh_ca_file = abs(s.transparent.doh_ca_file);
  if (s.transparent.resolver === 'doh' && s.transparent.doh_url === null) {
    const at = src.nodes.has('transparent.resolver') ? 'transparent.resolver' : 'transparent';
    src.report(src.nodes.get(at), at, 'resolver: doh needs transparent.doh_url');
  }
  s.ram_dir.path = abs(s.ram_dir.path);
  return s;
}
