// The typed configuration every capability reads. Two sources:
//  - the Enclaver manifest `enclaver.yaml` (kept valid for Enclaver: nothing of cloister's own goes in it);
//  - cloister's own settings, in an optional `cloister.yaml` beside it (documented defaults below).

export interface TlsFiles {
  key_file: string;
  cert_file: string;
}

export interface IngressEntry {
  listen_port: number;
  tls?: TlsFiles;
}

export interface Manifest {
  version: string;
  name: string;
  target: string;
  sources: {
    app: string;
    /** E5 name of the supervisor image (E6: odyn). */
    supervisor?: string;
    /** E5 name of the wrapper image (E6: sleeve). */
    wrapper?: string;
    odyn?: string;
    sleeve?: string;
  };
  signature?: { certificate: string; key: string };
  ingress?: IngressEntry[];
  egress?: { proxy_port?: number; allow?: string[]; deny?: string[] };
  defaults?: { cpu_count?: number; memory_mb?: number };
  kms_proxy?: { listen_port: number; endpoints?: Record<string, string> };
  api?: { listen_port: number };
  spire?: {
    server_addr?: string;
    ca_cert?: string;
    trust_domain?: string;
    svid_dir?: string;
    workload_api_addr?: string;
  };
}

export type RestartPolicy = 'never' | 'on-failure' | 'always';

/** Where a boot-time secret's KMS ciphertext comes from (cloister.yaml secrets[].source). */
export type SecretSource =
  | { kind: 'inline'; ciphertext: string }
  /** A file in the image; `path` absolute (relative ones are resolved beside cloister.yaml). */
  | { kind: 'file'; path: string; format: 'binary' | 'base64' }
  | {
      kind: 's3';
      bucket: string;
      key: string;
      format: 'binary' | 'base64';
      region?: string;
      endpoint?: string;
    }
  | { kind: 'ssm'; name: string; region?: string; endpoint?: string }
  | { kind: 'secretsmanager'; id: string; version_stage?: string; region?: string; endpoint?: string };

/** One boot-time secret (cloister.yaml secrets[]): decrypted through KMS with attestation before the app starts. */
export interface SecretSpec {
  name: string;
  source: SecretSource;
  /** KeyId sent with Decrypt (KMS checks the ciphertext was made under it). */
  key_id?: string;
  encryption_context?: Record<string, string>;
  /** KMS region (and default region of the source); else from key_id's ARN, else $AWS_REGION. */
  region?: string;
  targets: {
    /** Environment variable of the app. */
    env?: string;
    /** The variable holds the plaintext base64-encoded (binary-safe), not the plaintext itself. */
    env_base64: boolean;
    /** File in the RAM directory (ram_dir.path), owned by the app's uid/gid. */
    file?: string;
    file_mode: number;
    /** The private key (PEM) of this ingress port's TLS (the manifest's port with a tls block). */
    ingress_tls?: number;
  };
  /** false: a failure is logged and the secret skipped; true (default): the app does not start. */
  required: boolean;
}

/** cloister.yaml. Every key is optional; DEFAULT_SETTINGS holds the documented defaults. */
export interface Settings {
  app: {
    /** Run the app as this uid/gid (default: cloister's own, i.e. root in an enclave). */
    uid: number | null;
    gid: number | null;
    restart: RestartPolicy;
    /** First restart delay; doubles each time up to restart_backoff_max_ms. */
    restart_backoff_ms: number;
    restart_backoff_max_ms: number;
    /** Give up after this many restarts in a row (null = never give up). */
    max_restarts: number | null;
    /** SIGTERM -> wait this long -> SIGKILL. */
    stop_grace_ms: number;
  };
  log: {
    /** Size of the log ring replayed to each new reader on vsock 17001. */
    buffer_bytes: number;
    level: 'trace' | 'debug' | 'info' | 'warn' | 'error';
  };
  transport: {
    kind: 'vsock' | 'emulated';
    /** emulated: directory of `<cid>/<port>.sock`. */
    dir: string | null;
    /** emulated: the enclave's CID. */
    enclave_cid: number;
    /** The CID the enclave dials for egress (vsock 17002): 2, the parent instance, as odyn. */
    parent_cid: number;
  };
  egress: {
    connect_timeout_ms: number;
    header_timeout_ms: number;
    idle_timeout_ms: number;
    max_header_bytes: number;
    max_tunnels: number;
  };
  /** Transparent egress (docs/transparent-egress.md): off by default, odyn's behaviour. */
  transparent: {
    /** Redirect the app's outgoing TCP (and DNS) to cloister: apps that ignore HTTP(S)_PROXY get the allowlist. */
    enabled: boolean;
    /** Who answers the DNS stub's questions about allowed names: the host relay, or a DoH server through egress. */
    resolver: 'relay' | 'doh';
    /** resolver: doh. An https URL (RFC 8484 POST); its host:port must be allowed by egress.allow. */
    doh_url: string | null;
    /** resolver: doh. A PEM file of CA certificates for the DoH server instead of Node's bundled roots. */
    doh_ca_file: string | null;
    /** A connection allowed through a name must not name another host in its TLS SNI or HTTP Host. */
    check_sni: boolean;
  };
  ingress: {
    /** How long to keep retrying 127.0.0.1:<port> while the app is still starting. */
    upstream_retry_ms: number;
    /** Send a PROXY protocol v2 header to the app (host side adds it). */
    proxy_protocol: boolean;
    /** PROXY v2 TLV types (0-255) passed on to the app; the host's other TLVs are stripped. */
    proxy_protocol_tlvs: number[];
    /** Per ingress port (an enclaver.yaml ingress listen_port, as a string key): `tls: attested`. */
    ports: Record<string, { tls: 'attested' }>;
  };
  kms: {
    /** How long a KMS call that arrives before credentials/key are ready waits. */
    ready_wait_ms: number;
    upstream_timeout_ms: number;
    /** Boot-time secrets' KMS endpoint per region (over kms_proxy.endpoints), as kms_proxy.endpoints. */
    endpoints: Record<string, string>;
  };
  streams: {
    /** Readers served at once on each host-facing stream (status 17000, logs 17001); more are closed. */
    max_readers: number;
  };
  api: {
    /** Port for /healthz and /metrics inside the enclave (null = off). */
    metrics_port: number | null;
  };
  /** Boot-time secrets (src/secrets/), in order. */
  secrets: SecretSpec[];
  ram_dir: {
    /**
     * Where files that must stay in RAM go (boot-time secrets, attested TLS material); null: a fresh
     * private directory under /dev/shm, removed at exit (what `cloister dev` uses).
     */
    path: string | null;
    /** `auto`: mount a tmpfs there when running as root (the enclave); `never`: use it as it is. */
    mount: 'auto' | 'never';
    /** Size limit of the tmpfs cloister mounts, in MiB. */
    size_mb: number;
  };
  nsm: {
    /** `device`: /dev/nsm (a real enclave). `software`: the software NSM (dev mode, tests). */
    kind: 'device' | 'software';
    device_path: string;
    /** software: where its CA chain and key live, so the same root is trusted across restarts. */
    state_dir: string | null;
    /** software: PCR index -> hex value reported in documents (others are zero). */
    pcrs: Record<string, string>;
  };
  /** Attested TLS (docs/attested-tls.md): on when an ingress port asks for it or app_files is true. */
  attested_tls: {
    /** The served document is never older than this: the certificate is re-issued at 3/4 of it. */
    max_age_ms: number;
    /** subjectAltName dNSNames of the certificate. */
    dns_names: string[];
    /** Write key.pem, cert.pem, chain.pem for the app under <ram_dir>/attested-tls/. */
    app_files: boolean;
    /** Signal sent to the app after each renewal (app_files only); null: none. */
    reload_signal: 'SIGHUP' | 'SIGUSR1' | 'SIGUSR2' | null;
  };
}

export const DEFAULT_SETTINGS: Settings = {
  app: {
    uid: null,
    gid: null,
    restart: 'never',
    restart_backoff_ms: 1000,
    restart_backoff_max_ms: 30000,
    max_restarts: null,
    stop_grace_ms: 10000,
  },
  log: { buffer_bytes: 128 * 1024, level: 'info' },
  transport: { kind: 'vsock', dir: null, enclave_cid: 16, parent_cid: 2 },
  egress: {
    connect_timeout_ms: 10000,
    header_timeout_ms: 10000,
    idle_timeout_ms: 300000,
    max_header_bytes: 16384,
    max_tunnels: 10000,
  },
  transparent: { enabled: false, resolver: 'relay', doh_url: null, doh_ca_file: null, check_sni: false },
  ingress: { upstream_retry_ms: 30000, proxy_protocol: false, proxy_protocol_tlvs: [], ports: {} },
  kms: { ready_wait_ms: 10000, upstream_timeout_ms: 30000, endpoints: {} },
  streams: { max_readers: 8 },
  api: { metrics_port: null },
  secrets: [],
  ram_dir: { path: '/run/cloister', mount: 'auto', size_mb: 16 },
  nsm: { kind: 'device', device_path: '/dev/nsm', state_dir: null, pcrs: {} },
  attested_tls: { max_age_ms: 600_000, dns_names: ['localhost'], app_files: false, reload_signal: 'SIGHUP' },
};

export interface Config {
  /** Absolute path of the manifest file that was loaded. */
  manifestPath: string;
  /** The directory holding enclaver.yaml, cloister.yaml and tls/. */
  configDir: string;
  manifest: Manifest;
  settings: Settings;
}
