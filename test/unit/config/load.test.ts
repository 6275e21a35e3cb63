// Config loading: every bad-config case must name the file, the key path and the line of the
// offending node; good cases are the manifests Enclaver's own docs use, plus cloister.yaml.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import {
  ConfigError,
  findConfigFiles,
  KMS_WITHOUT_EGRESS,
  loadConfig,
  mergeSettings,
} from '../../../src/config/load.ts';
import { DEFAULT_SETTINGS } from '../../../src/config/types.ts';
import { BASE_MANIFEST as BASE, configDirs } from '../../helpers/config-dirs.ts';

const { root, configDir } = configDirs();

function load(manifest: string, settings?: string) {
  return loadConfig(findConfigFiles(configDir(manifest, settings)));
}

/** Runs the load, expects exactly one problem, and returns it. */
function loadError(manifest: string, settings?: string): ConfigError {
  try {
    load(manifest, settings);
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected a ConfigError, got ${String(err)}`);
    assert.equal(err.errors.length, 1, `expected one problem, got:\n${err.message}`);
    return err;
  }
  assert.fail('the config loaded without error');
}

// Lines 1-5; each case's own lines start at 6.
const EGRESS = `egress:
  allow: [169.254.169.254, kms.*.amazonaws.com]
`;

interface BadCase {
  name: string;
  manifest: string;
  settings?: string;
  file?: 'enclaver.yaml' | 'cloister.yaml';
  keyPath: string;
  line: number;
  match: RegExp | string;
}

const bad: BadCase[] = [
  {
    name: 'unknown top-level key',
    manifest: `${BASE}bogus: 1\n`,
    keyPath: 'bogus',
    line: 6,
    match: /unknown key "bogus"; allowed keys: version, name, target, sources, signature, ingress/,
  },
  {
    name: 'unknown key under sources',
    manifest: `${BASE}  image: x\n`,
    keyPath: 'sources.image',
    line: 6,
    match: 'allowed keys: app, supervisor, wrapper, odyn, sleeve',
  },
  {
    name: 'unknown key in an ingress entry',
    manifest: `${BASE}ingress:\n  - listen_port: 80\n    port: 81\n`,
    keyPath: 'ingress[0].port',
    line: 8,
    match: 'allowed keys: listen_port, tls',
  },
  {
    name: 'missing version',
    manifest: BASE.replace('version: v1\n', ''),
    keyPath: 'version',
    line: 1,
    match: 'missing required key "version"',
  },
  {
    name: 'missing target',
    manifest: BASE.replace('target: app:enclave\n', ''),
    keyPath: 'target',
    line: 1,
    match: 'missing required key "target"',
  },
  {
    name: 'missing sources.app',
    manifest: 'version: v1\nname: a\ntarget: t\nsources:\n  supervisor: odyn:1\n',
    keyPath: 'sources.app',
    line: 5,
    match: 'missing required key "app"',
  },
  {
    name: 'sources is a string',
    manifest: 'version: v1\nname: a\ntarget: t\nsources: app:latest\n',
    keyPath: 'sources',
    line: 4,
    match: 'must be a mapping with keys app, supervisor',
  },
  {
    name: 'version is a mapping',
    manifest: BASE.replace('version: v1', 'version: {v: 1}'),
    keyPath: 'version',
    line: 1,
    match: 'must be a string, got a mapping',
  },
  {
    name: 'ingress listen_port missing',
    manifest: `${BASE}ingress:\n  - listen_port: 80\n  - tls: {key_file: k.pem, cert_file: c.pem}\n`,
    keyPath: 'ingress[1].listen_port',
    line: 8,
    match: 'missing required key "listen_port"',
  },
  {
    name: 'ingress listen_port quoted',
    manifest: `${BASE}ingress:\n  - listen_port: "8080"\n`,
    keyPath: 'ingress[0].listen_port',
    line: 7,
    match: 'must be a port number (an integer in 1..65535), got the string "8080"',
  },
  {
    name: 'ingress listen_port 0',
    manifest: `${BASE}ingress:\n  - listen_port: 0\n`,
    keyPath: 'ingress[0].listen_port',
    line: 7,
    match: '0 is out of range',
  },
  {
    name: 'ingress listen_port 65536',
    manifest: `${BASE}ingress:\n  - listen_port: 443\n  - listen_port: 65536\n`,
    keyPath: 'ingress[1].listen_port',
    line: 8,
    match: '65536 is out of range',
  },
  {
    name: 'ingress listen_port float',
    manifest: `${BASE}ingress:\n  - listen_port: 8080.0\n`,
    keyPath: 'ingress[0].listen_port',
    line: 7,
    match: 'got the number 8080.0',
  },
  {
    name: 'ingress is a mapping',
    manifest: `${BASE}ingress:\n  listen_port: 80\n`,
    keyPath: 'ingress',
    line: 7,
    match: 'must be a list of',
  },
  {
    name: 'tls without cert_file',
    manifest: `${BASE}ingress:\n  - listen_port: 443\n    tls:\n      key_file: key.pem\n`,
    keyPath: 'ingress[0].tls.cert_file',
    line: 9,
    match: 'missing required key "cert_file"',
  },
  {
    name: 'signature without key',
    manifest: `${BASE}signature:\n  certificate: cert.pem\n`,
    keyPath: 'signature.key',
    line: 7,
    match: 'missing required key "key"',
  },
  {
    name: 'duplicate ingress ports',
    manifest: `${BASE}ingress:\n  - listen_port: 8080\n  - listen_port: 9090\n  - listen_port: 8080\n`,
    keyPath: 'ingress[2].listen_port',
    line: 9,
    match: 'port 8080 is already used by ingress[0].listen_port (line 7)',
  },
  {
    name: 'api port = kms_proxy port',
    manifest: `${BASE}${EGRESS}kms_proxy:\n  listen_port: 9999\napi:\n  listen_port: 9999\n`,
    keyPath: 'api.listen_port',
    line: 11,
    match: 'port 9999 is already used by kms_proxy.listen_port (line 9)',
  },
  {
    name: 'ingress port = default egress proxy port',
    manifest: `${BASE}ingress:\n  - listen_port: 10000\n${EGRESS}`,
    keyPath: 'egress.proxy_port',
    line: 8,
    match: "the egress proxy's default port 10000 is already used by ingress[0].listen_port (line 7)",
  },
  {
    name: 'kms_proxy port = explicit egress proxy_port',
    manifest: `${BASE}egress:\n  proxy_port: 3128\n  allow: ["**"]\nkms_proxy:\n  listen_port: 3128\n`,
    keyPath: 'kms_proxy.listen_port',
    line: 10,
    match: 'port 3128 is already used by egress.proxy_port (line 7)',
  },
  {
    name: 'ingress port is the vsock status port',
    manifest: `${BASE}ingress:\n  - listen_port: 17000\n`,
    keyPath: 'ingress[0].listen_port',
    line: 7,
    match: 'port 17000 is reserved',
  },
  {
    name: 'kms_proxy without egress',
    manifest: `${BASE}kms_proxy:\n  listen_port: 9999\n`,
    keyPath: 'kms_proxy',
    line: 6,
    match: KMS_WITHOUT_EGRESS,
  },
  {
    name: 'kms_proxy with an empty allow list',
    manifest: `${BASE}egress:\n  allow: []\n  deny: [evil.com]\nkms_proxy:\n  listen_port: 9999\n`,
    keyPath: 'kms_proxy',
    line: 9,
    match:
      'KMS proxy is configured but egress is not. Configure egress allow policy to access the IMDS at 169.254.169.254 and the AWS KMS endpoint',
  },
  {
    name: 'kms_proxy without listen_port',
    manifest: `${BASE}${EGRESS}kms_proxy:\n  endpoints: {us-east-1: kms.example.com}\n`,
    keyPath: 'kms_proxy.listen_port',
    line: 9,
    match: 'missing required key "listen_port"',
  },
  {
    name: 'kms endpoint with a path',
    manifest: `${BASE}${EGRESS}kms_proxy:\n  listen_port: 9999\n  endpoints:\n    us-east-1: kms.us-east-1.amazonaws.com\n    eu-west-1: https://kms.example.com/v1\n`,
    keyPath: 'kms_proxy.endpoints.eu-west-1',
    line: 12,
    match: '"https://kms.example.com/v1" is not a host[:port] authority',
  },
  {
    name: 'kms endpoint with another scheme',
    manifest: `${BASE}${EGRESS}kms_proxy:\n  listen_port: 9999\n  endpoints:\n    us-east-1: ftp://kms.example.com\n`,
    keyPath: 'kms_proxy.endpoints.us-east-1',
    line: 11,
    match: 'scheme must be http or https',
  },
  {
    name: 'cpu_count 0',
    manifest: `${BASE}defaults:\n  cpu_count: 0\n  memory_mb: 4096\n`,
    keyPath: 'defaults.cpu_count',
    line: 7,
    match: 'at least 1 CPU',
  },
  {
    name: 'memory_mb 32',
    manifest: `${BASE}defaults:\n  memory_mb: 32\n`,
    keyPath: 'defaults.memory_mb',
    line: 7,
    match: '32 is out of range: must be an integer >= 64',
  },
  {
    name: 'E5 and E6 supervisor image both set',
    manifest: `${BASE}  supervisor: registry.edgebit.io/odyn:latest\n  odyn: public.ecr.aws/odyn:latest\n`,
    keyPath: 'sources.odyn',
    line: 7,
    match: 'sources.odyn and sources.supervisor (line 6) are the same image',
  },
  {
    name: 'E5 and E6 wrapper image both set',
    manifest: `${BASE.replace('sources:\n', 'sources:\n  sleeve: s:1\n')}  wrapper: w:1\n`,
    keyPath: 'sources.wrapper',
    line: 7,
    match: 'sources.wrapper and sources.sleeve (line 5) are the same image',
  },
  {
    name: 'egress rule is a mapping',
    manifest: `${BASE}egress:\n  allow:\n    - example.com\n    - {host: a.com}\n`,
    keyPath: 'egress.allow[1]',
    line: 9,
    match: 'must be a string, got a mapping',
  },
  {
    name: 'egress rule is a number',
    manifest: `${BASE}egress:\n  allow:\n    - 2852039166\n`,
    keyPath: 'egress.allow[0]',
    line: 8,
    match: 'must be a string, got the number 2852039166 (quote it',
  },
  {
    name: 'egress allow is a string',
    manifest: `${BASE}egress:\n  allow: example.com\n`,
    keyPath: 'egress.allow',
    line: 7,
    match: 'must be a list of strings',
  },
  {
    name: 'invalid CIDR in deny (compilePolicy)',
    manifest: `${BASE}egress:\n  allow: ["**"]\n  deny:\n    - 169.254.169.254\n    - 10.0.0.0/33\n`,
    keyPath: 'egress.deny[1]',
    line: 10,
    match: '10.0.0.0/33',
  },
  {
    name: '** in the middle (compilePolicy)',
    manifest: `${BASE}egress:\n  allow:\n    - foo.**.com\n`,
    keyPath: 'egress.allow[0]',
    line: 8,
    match: 'foo.**.com',
  },
  {
    name: 'unknown key in spire (E6)',
    manifest: `${BASE}spire:\n  server_addr: https://spire:8081\n  server: x\n`,
    keyPath: 'spire.server',
    line: 8,
    match: 'allowed keys: server_addr, ca_cert, trust_domain, svid_dir, workload_api_addr',
  },
  {
    name: 'YAML syntax error',
    manifest: `${BASE}egress:\n  allow: [a.com, b.com\nkms_proxy: {}\n`,
    keyPath: '',
    line: 8,
    match: 'YAML syntax error',
  },
  {
    name: 'duplicate key',
    manifest: `${BASE}name: again\n`,
    keyPath: '',
    line: 6,
    match: 'YAML syntax error: Map keys must be unique',
  },
  { name: 'empty manifest', manifest: '# nothing\n', keyPath: '', line: 1, match: 'the manifest is empty' },
  {
    name: 'manifest is a list',
    manifest: '- version: v1\n',
    keyPath: '',
    line: 1,
    match: 'must be a mapping with keys version, name, target',
  },
  // cloister.yaml
  {
    name: 'settings: unknown section',
    manifest: BASE,
    settings: 'app:\n  restart: always\nfoo: {}\n',
    file: 'cloister.yaml',
    keyPath: 'foo',
    line: 3,
    match:
      'allowed keys: app, log, transport, egress, transparent, ingress, kms, streams, api, secrets, ram_dir, nsm, attested_tls',
  },
  {
    name: 'settings: unknown key',
    manifest: BASE,
    settings: 'app:\n  restarts: 3\n',
    file: 'cloister.yaml',
    keyPath: 'app.restarts',
    line: 2,
    match: 'allowed keys: uid, gid, restart,',
  },
  {
    name: 'settings: ingress.ports names a port the manifest does not forward',
    manifest: `${BASE}ingress:\n  - listen_port: 8443\n`,
    settings: 'ingress:\n  ports:\n    9443:\n      tls: attested\n',
    file: 'cloister.yaml',
    keyPath: 'ingress.ports.9443',
    line: 3,
    match: 'port 9443 is not an ingress port of the manifest',
  },
  {
    name: 'settings: attested TLS on a port whose manifest entry has a tls block',
    manifest: `${BASE}ingress:\n  - listen_port: 8443\n    tls: {key_file: k.pem, cert_file: c.pem}\n`,
    settings: 'ingress:\n  ports:\n    8443:\n      tls: attested\n',
    file: 'cloister.yaml',
    keyPath: 'ingress.ports.8443.tls',
    line: 4,
    match: 'attested TLS replaces it',
  },
  {
    name: 'settings: ingress.ports tls is not attested',
    manifest: `${BASE}ingress:\n  - listen_port: 8443\n`,
    settings: 'ingress:\n  ports:\n    8443:\n      tls: yes\n',
    file: 'cloister.yaml',
    keyPath: 'ingress.ports.8443.tls',
    line: 4,
    match: 'must be one of attested',
  },
  {
    name: 'settings: attested_tls.max_age_ms longer than the NSM certificate allows',
    manifest: BASE,
    settings: 'attested_tls:\n  max_age_ms: 10800000\n',
    file: 'cloister.yaml',
    keyPath: 'attested_tls.max_age_ms',
    line: 2,
    match: 'out of range: must be a duration in milliseconds (1000..7200000)',
  },
  {
    name: 'settings: attested_tls.reload_signal not a reload signal',
    manifest: BASE,
    settings: 'attested_tls:\n  reload_signal: SIGKILL\n',
    file: 'cloister.yaml',
    keyPath: 'attested_tls.reload_signal',
    line: 2,
    match: 'must be one of SIGHUP, SIGUSR1, SIGUSR2',
  },
  {
    name: 'settings: bad restart policy',
    manifest: BASE,
    settings: 'app:\n  restart: sometimes\n',
    file: 'cloister.yaml',
    keyPath: 'app.restart',
    line: 2,
    match: 'must be one of never, on-failure, always, got the string "sometimes"',
  },
  {
    name: 'settings: bad log level',
    manifest: BASE,
    settings: 'log: {level: verbose}\n',
    file: 'cloister.yaml',
    keyPath: 'log.level',
    line: 1,
    match: 'must be one of trace, debug, info, warn, error',
  },
  {
    name: 'settings: zero timeout',
    manifest: BASE,
    settings: 'egress:\n  connect_timeout_ms: 0\n',
    file: 'cloister.yaml',
    keyPath: 'egress.connect_timeout_ms',
    line: 2,
    match: '0 is out of range',
  },
  {
    name: 'settings: boolean as string',
    manifest: BASE,
    settings: 'ingress:\n  proxy_protocol: "yes"\n',
    file: 'cloister.yaml',
    keyPath: 'ingress.proxy_protocol',
    line: 2,
    match: 'must be true or false',
  },
  {
    name: 'settings: no readers at all would leave the host blind',
    manifest: BASE,
    settings: 'streams:\n  max_readers: 0\n',
    file: 'cloister.yaml',
    keyPath: 'streams.max_readers',
    line: 2,
    match: '0 is out of range',
  },
  {
    name: 'settings: a PROXY v2 TLV type out of range',
    manifest: BASE,
    settings: 'ingress:\n  proxy_protocol_tlvs: [1, 256]\n',
    file: 'cloister.yaml',
    keyPath: 'ingress.proxy_protocol_tlvs[1]',
    line: 2,
    match: '256 is out of range',
  },
  {
    name: 'settings: the CRC32C TLV cannot be kept (the header it covers is rewritten)',
    manifest: BASE,
    settings: 'ingress:\n  proxy_protocol_tlvs:\n    - 3\n',
    file: 'cloister.yaml',
    keyPath: 'ingress.proxy_protocol_tlvs[0]',
    line: 3,
    match: 'type 3 (CRC32C) cannot be passed on',
  },
  {
    name: 'settings: host CID',
    manifest: BASE,
    settings: 'transport:\n  kind: emulated\n  enclave_cid: 2\n',
    file: 'cloister.yaml',
    keyPath: 'transport.enclave_cid',
    line: 3,
    match: '2 is out of range',
  },
  {
    name: 'settings: bad PCR index',
    manifest: BASE,
    settings: `nsm:\n  pcrs:\n    40: ${'ab'.repeat(48)}\n`,
    file: 'cloister.yaml',
    keyPath: 'nsm.pcrs.40',
    line: 3,
    match: 'not a PCR index',
  },
  {
    name: 'settings: short PCR value',
    manifest: BASE,
    settings: 'nsm:\n  pcrs:\n    0: abcd\n',
    file: 'cloister.yaml',
    keyPath: 'nsm.pcrs.0',
    line: 3,
    match: 'must be 96 hex digits',
  },
  {
    name: 'settings: backoff max below backoff',
    manifest: BASE,
    settings: 'app:\n  restart_backoff_ms: 5000\n  restart_backoff_max_ms: 1000\n',
    file: 'cloister.yaml',
    keyPath: 'app.restart_backoff_max_ms',
    line: 3,
    match: 'must be >= restart_backoff_ms (5000)',
  },
  {
    name: 'settings: metrics port clashes with the manifest',
    manifest: `${BASE}api:\n  listen_port: 9000\n`,
    settings: 'api:\n  metrics_port: 9000\n',
    file: 'cloister.yaml',
    keyPath: 'api.metrics_port',
    line: 2,
    match: /port 9000 is already used by .*enclaver\.yaml: api\.listen_port \(line 7\)/,
  },
  {
    name: 'settings: metrics port on the status vsock port',
    manifest: BASE,
    settings: 'api:\n  metrics_port: 17000\n',
    file: 'cloister.yaml',
    keyPath: 'api.metrics_port',
    line: 2,
    match: 'port 17000 is reserved',
  },
];

describe('bad configs name the file, key path and line', () => {
  for (const c of bad) {
    test(c.name, () => {
      const err = loadError(c.manifest, c.settings);
      assert.ok(err.file.endsWith(c.file ?? 'enclaver.yaml'), `file: ${err.file}`);
      assert.equal(err.keyPath, c.keyPath, err.message);
      assert.equal(err.line, c.line, err.message);
      assert.ok(err.column >= 1);
      if (typeof c.match === 'string') assert.ok(err.message.includes(c.match), err.message);
      else assert.match(err.message, c.match);
      const prefix = `${err.file}:${err.line}:${err.column}: ${c.keyPath === '' ? '' : `${c.keyPath}: `}`;
      assert.ok(err.message.startsWith(prefix), `${err.message} should start with ${prefix}`);
    });
  }
  assert.ok(bad.length >= 25);
});

test('several problems are reported together, in document order', () => {
  const manifest = `${BASE}ingress:\n  - listen_port: 0\nbogus: 1\ndefaults:\n  memory_mb: 1\n`;
  assert.throws(
    () => load(manifest),
    (err: unknown) => {
      assert.ok(err instanceof ConfigError);
      assert.deepEqual(
        err.errors.map((e) => [e.keyPath, e.line]),
        [
          ['ingress[0].listen_port', 7],
          ['bogus', 8],
          ['defaults.memory_mb', 10],
        ],
      );
      assert.equal(err.message.split('\n').length, 3);
      return true;
    },
  );
});

test('a manifest that does not exist is an error naming the file', () => {
  const missing = join(root, 'nowhere', 'enclaver.yaml');
  assert.throws(
    () => loadConfig(findConfigFiles(join(root, 'nowhere'))),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.file === missing &&
      err.message === `${missing}: cannot read the file: ENOENT`,
  );
});

test('an explicit settings file that does not exist is an error', () => {
  const dir = configDir(BASE);
  assert.throws(
    () => loadConfig({ manifestPath: join(dir, 'enclaver.yaml'), settingsPath: join(dir, 'nope.yaml') }),
    (err: unknown) =>
      err instanceof ConfigError &&
      err.line === 0 &&
      /nope\.yaml: cannot read the file: ENOENT/.test(err.message),
  );
});

test('manifest path `-` reads stdin (as odyn does); errors name <stdin>', () => {
  const loader = resolve('src/config/load.ts');
  const script = `import { loadConfig } from ${JSON.stringify(loader)};
    try { process.stdout.write(JSON.stringify(loadConfig({ manifestPath: '-' }))); }
    catch (e) { process.stdout.write(JSON.stringify({ error: e.message })); }`;
  const run = (input: string) => {
    const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], {
      input,
      cwd: process.cwd(),
      encoding: 'utf8',
      timeout: 20000,
    });
    assert.equal(r.status, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  const ok = run(`${BASE}ingress:\n  - listen_port: 8080\n`);
  assert.equal(ok.manifestPath, '-');
  assert.equal(ok.configDir, process.cwd());
  assert.deepEqual(ok.manifest.ingress, [{ listen_port: 8080 }]);
  assert.equal(
    run(`${BASE}ingress: 5\n`).error.split('\n')[0],
    '<stdin>:6:10: ingress: must be a list of ingress entries (mappings with keys listen_port, tls), got the number 5',
  );
});

describe('good configs', () => {
  test("Enclaver's KMS guide manifest (docs/guide-kms.md)", () => {
    const c = load(
      `${BASE}kms_proxy:\n  listen_port: 9999\n\negress:\n  allow:\n    - 169.254.169.254\n    - kms.*.amazonaws.com\n`,
    );
    assert.deepEqual(c.manifest.kms_proxy, { listen_port: 9999 });
    assert.deepEqual(c.manifest.egress, { allow: ['169.254.169.254', 'kms.*.amazonaws.com'] });
    assert.deepEqual(c.settings, DEFAULT_SETTINGS);
  });

  test("Enclaver's Vault guide manifest (docs/guide-vault.md, adds `host`)", () => {
    const dir = configDir(`version: v1
name: "enclaver-vault"
sources:
  app: "vault:enclave-src"
target: "vault:enclave"
ingress:
  - listen_port: 8200
egress:
  allow:
    - 169.254.169.254
    - kms.*.amazonaws.com
    - host
kms_proxy:
  listen_port: 9999
defaults:
  memory_mb: 3000
`);
    const c = loadConfig(findConfigFiles(dir));
    assert.equal(c.configDir, dir);
    assert.equal(c.manifestPath, join(dir, 'enclaver.yaml'));
    assert.deepEqual(c.manifest, {
      version: 'v1',
      name: 'enclaver-vault',
      sources: { app: 'vault:enclave-src' },
      target: 'vault:enclave',
      ingress: [{ listen_port: 8200 }],
      egress: { allow: ['169.254.169.254', 'kms.*.amazonaws.com', 'host'] },
      kms_proxy: { listen_port: 9999 },
      defaults: { memory_mb: 3000 },
    });
  });

  test('E5 source names (supervisor, wrapper)', () => {
    const c = load(
      `${BASE}  supervisor: registry.edgebit.io/odyn:latest\n  wrapper: registry.edgebit.io/enclaver-wrapper-base:latest\n`,
    );
    assert.equal(c.manifest.sources.supervisor, 'registry.edgebit.io/odyn:latest');
    assert.equal(c.manifest.sources.wrapper, 'registry.edgebit.io/enclaver-wrapper-base:latest');
  });

  test('E6 source names (odyn, sleeve) and the spire block', () => {
    const c = load(
      `${BASE}  odyn: public.ecr.aws/s2t1d4c6/enclaver-io/odyn:latest\n  sleeve: sleeve:1\nspire:\n  server_addr: https://spire.example:8081\n  trust_domain: example.org\n`,
    );
    assert.equal(c.manifest.sources.odyn, 'public.ecr.aws/s2t1d4c6/enclaver-io/odyn:latest');
    assert.equal(c.manifest.sources.sleeve, 'sleeve:1');
    assert.deepEqual(c.manifest.spire, {
      server_addr: 'https://spire.example:8081',
      trust_domain: 'example.org',
    });
  });

  test('every manifest key; relative file paths resolve against the manifest directory', () => {
    const dir = configDir(`${BASE}signature:
  certificate: sign/cert.pem
  key: /abs/key.pem
ingress:
  - listen_port: 8443
    tls:
      key_file: tls/key.pem
      cert_file: tls/cert.pem
  - listen_port: 0x1F90
egress:
  proxy_port: 3128
  allow: ["**", "10.0.0.0/8"]
  deny: [169.254.169.254]
defaults: {cpu_count: 4, memory_mb: 8192}
kms_proxy:
  listen_port: 9999
  endpoints:
    us-east-1: kms.us-east-1.amazonaws.com:443
    local: http://127.0.0.1:4566
api:
  listen_port: 9001
`);
    const c = loadConfig(findConfigFiles(dir));
    assert.deepEqual(c.manifest.signature, { certificate: join(dir, 'sign/cert.pem'), key: '/abs/key.pem' });
    assert.deepEqual(c.manifest.ingress, [
      {
        listen_port: 8443,
        tls: { key_file: join(dir, 'tls/key.pem'), cert_file: join(dir, 'tls/cert.pem') },
      },
      { listen_port: 8080 },
    ]);
    assert.deepEqual(c.manifest.egress, {
      proxy_port: 3128,
      allow: ['**', '10.0.0.0/8'],
      deny: ['169.254.169.254'],
    });
    assert.deepEqual(c.manifest.defaults, { cpu_count: 4, memory_mb: 8192 });
    assert.deepEqual(c.manifest.kms_proxy?.endpoints, {
      'us-east-1': 'kms.us-east-1.amazonaws.com:443',
      local: 'http://127.0.0.1:4566',
    });
    assert.deepEqual(c.manifest.api, { listen_port: 9001 });
  });

  test('Enclaver-compatible leniency: scalars as strings, null optional blocks, egress with deny only', () => {
    const c = load(
      `version: 1\nname: 2024\ntarget: t\nsources:\n  app: a\n  supervisor:\napi:\negress:\n  deny: [evil.com]\n`,
    );
    assert.equal(c.manifest.version, '1');
    assert.equal(c.manifest.name, '2024');
    assert.equal(c.manifest.sources.supervisor, undefined);
    assert.equal(c.manifest.api, undefined);
    assert.deepEqual(c.manifest.egress, { deny: ['evil.com'] });
  });

  test('a full cloister.yaml merges over the defaults', () => {
    const pcr = 'ab'.repeat(48);
    const dir = configDir(
      BASE,
      `app:
  uid: 1000
  gid: 1000
  restart: on-failure
  restart_backoff_ms: 500
  restart_backoff_max_ms: 8000
  max_restarts: 5
  stop_grace_ms: 3000
log:
  buffer_bytes: 65536
  level: debug
transport:
  kind: emulated
  dir: vsock
  enclave_cid: 20
  parent_cid: 1
egress:
  connect_timeout_ms: 2000
  header_timeout_ms: 3000
  idle_timeout_ms: 60000
  max_header_bytes: 8192
  max_tunnels: 100
transparent:
  enabled: true
  resolver: doh
  doh_url: https://dns.example/dns-query
  doh_ca_file: ca.pem
  check_sni: true
ingress:
  upstream_retry_ms: 1000
  proxy_protocol: true
  proxy_protocol_tlvs: [1, 0xea]
kms:
  ready_wait_ms: 2000
  upstream_timeout_ms: 5000
streams:
  max_readers: 3
api:
  metrics_port: 9100
ram_dir:
  path: ram
  mount: never
  size_mb: 4
nsm:
  kind: software
  device_path: /dev/nsm
  state_dir: /var/lib/cloister/nsm
  pcrs:
    0: ${pcr}
    8: ${pcr.toUpperCase()}
attested_tls:
  max_age_ms: 120000
  dns_names: [vault.example]
  app_files: true
  reload_signal: SIGUSR1
`,
    );
    const c = loadConfig(findConfigFiles(dir));
    assert.deepEqual(c.settings, {
      app: {
        uid: 1000,
        gid: 1000,
        restart: 'on-failure',
        restart_backoff_ms: 500,
        restart_backoff_max_ms: 8000,
        max_restarts: 5,
        stop_grace_ms: 3000,
      },
      log: { buffer_bytes: 65536, level: 'debug' },
      transport: { kind: 'emulated', dir: join(dir, 'vsock'), enclave_cid: 20, parent_cid: 1 },
      egress: {
        connect_timeout_ms: 2000,
        header_timeout_ms: 3000,
        idle_timeout_ms: 60000,
        max_header_bytes: 8192,
        max_tunnels: 100,
      },
      transparent: {
        enabled: true,
        resolver: 'doh',
        doh_url: 'https://dns.example/dns-query',
        doh_ca_file: join(dir, 'ca.pem'),
        check_sni: true,
      },
      ingress: { upstream_retry_ms: 1000, proxy_protocol: true, proxy_protocol_tlvs: [1, 0xea], ports: {} },
      kms: { ready_wait_ms: 2000, upstream_timeout_ms: 5000, endpoints: {} },
      streams: { max_readers: 3 },
      api: { metrics_port: 9100 },
      secrets: [],
      ram_dir: { path: join(dir, 'ram'), mount: 'never', size_mb: 4 },
      nsm: {
        kind: 'software',
        device_path: '/dev/nsm',
        state_dir: '/var/lib/cloister/nsm',
        pcrs: { '0': pcr, '8': pcr.toUpperCase() },
      },
      attested_tls: {
        max_age_ms: 120000,
        dns_names: ['vault.example'],
        app_files: true,
        reload_signal: 'SIGUSR1',
      },
    });
  });

  test('a partial cloister.yaml keeps the other defaults; explicit null is a value where allowed', () => {
    const c = load(BASE, 'app:\n  restart: always\n  max_restarts: null\nlog:\n  level: warn\n');
    assert.equal(c.settings.app.restart, 'always');
    assert.equal(c.settings.app.max_restarts, null);
    assert.equal(c.settings.app.stop_grace_ms, DEFAULT_SETTINGS.app.stop_grace_ms);
    assert.equal(c.settings.log.level, 'warn');
    assert.equal(c.settings.log.buffer_bytes, 128 * 1024);
    assert.deepEqual(c.settings.egress, DEFAULT_SETTINGS.egress);
  });

  test('no cloister.yaml (or an empty one) means all defaults', () => {
    const dir = configDir(BASE);
    assert.deepEqual(findConfigFiles(dir), { manifestPath: join(dir, 'enclaver.yaml') });
    assert.deepEqual(loadConfig(findConfigFiles(dir)).settings, DEFAULT_SETTINGS);
    assert.deepEqual(load(BASE, '# only a comment\n').settings, DEFAULT_SETTINGS);
    // The defaults object itself is never handed out (a caller mutating it must not change the next load).
    assert.notEqual(loadConfig(findConfigFiles(dir)).settings, DEFAULT_SETTINGS);
  });

  test('mergeSettings applies flag overrides section by section', () => {
    const merged = mergeSettings(DEFAULT_SETTINGS, {
      transport: { kind: 'emulated', dir: '/tmp/v' },
      log: { level: 'trace' },
      app: { uid: undefined },
    });
    assert.deepEqual(merged.transport, { kind: 'emulated', dir: '/tmp/v', enclave_cid: 16, parent_cid: 2 });
    assert.equal(merged.log.level, 'trace');
    assert.equal(merged.log.buffer_bytes, DEFAULT_SETTINGS.log.buffer_bytes);
    assert.equal(merged.app.uid, null);
    assert.equal(DEFAULT_SETTINGS.transport.kind, 'vsock');
  });
});
