// cloister.yaml `secrets:` (src/config/secrets.ts): a full example loads into typed secrets; every mistake
// is reported with the file, the key path and the line, like every other setting.
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { stringify } from 'yaml';
import { ConfigError, findConfigFiles, loadConfig } from '../../../src/config/load.ts';
import { secretsToYaml } from '../../../src/config/secrets.ts';
import { planSecrets } from '../../../src/plan/index.ts';
import { BASE_MANIFEST as BASE, configDirs } from '../../helpers/config-dirs.ts';

const { configDir } = configDirs();

const MANIFEST = `${BASE}egress:
  allow: [169.254.169.254, "**.amazonaws.com"]
kms_proxy:
  listen_port: 9999
  endpoints: { us-east-1: "https://kms.us-east-1.amazonaws.com", eu-west-1: "kms.eu-west-1.amazonaws.com" }
ingress:
  - listen_port: 8443
    tls: { key_file: tls/key.pem.enc, cert_file: tls/cert.pem }
  - listen_port: 8080
`;
const CT = Buffer.from('a ciphertext stands here').toString('base64');

test('a full secrets list loads: every source, targets, defaults', () => {
  const dir = configDir(
    MANIFEST,
    `kms:
  endpoints:
    eu-west-1: "http://127.0.0.1:4599"
    us-east-1: "https://kms-fips.us-east-1.amazonaws.com"
secrets:
  - name: vault-tls-key
    source: { file: tls/key.pem.enc }
    key_id: arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab
    encryption_context: { app: vault, purpose: tls }
    targets: { ingress_tls: 8443, file: vault/key.pem }
  - name: db-password
    source: { inline: "${CT}" }
    region: us-east-1
    targets: { env: DB_PASSWORD }
  - name: token
    source: { s3: { bucket: my-bucket, key: boot/token.enc }, format: base64, region: eu-west-1 }
    targets: { env: TOKEN, env_base64: true, file: token, file_mode: "0440" }
    required: false
  - name: from-ssm
    source: { ssm: { name: /app/secret }, endpoint: "http://127.0.0.1:4566" }
    targets: { env: FROM_SSM }
  - name: from-sm
    source: { secretsmanager: { id: app/secret, version_stage: AWSPREVIOUS } }
    targets: { env: FROM_SM }
`,
  );
  const config = loadConfig(findConfigFiles(dir));
  const { settings } = config;
  // cloister.yaml kms.endpoints over the manifest's kms_proxy.endpoints, for the secrets only.
  assert.deepEqual(planSecrets(config)?.kmsEndpoints, {
    'us-east-1': 'https://kms-fips.us-east-1.amazonaws.com',
    'eu-west-1': 'http://127.0.0.1:4599',
  });
  // What `cloister dev` writes back (and `cloister secrets encrypt` prints) loads to the same secrets.
  const again = loadConfig(
    findConfigFiles(configDir(MANIFEST, stringify({ secrets: secretsToYaml(settings.secrets) }))),
  );
  assert.deepEqual(again.settings.secrets, settings.secrets);
  assert.deepEqual(settings.secrets, [
    {
      name: 'vault-tls-key',
      source: { kind: 'file', path: join(dir, 'tls/key.pem.enc'), format: 'binary' },
      key_id: 'arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab',
      encryption_context: { app: 'vault', purpose: 'tls' },
      targets: { env_base64: false, file: 'vault/key.pem', file_mode: 0o400, ingress_tls: 8443 },
      required: true,
    },
    {
      name: 'db-password',
      source: { kind: 'inline', ciphertext: CT },
      region: 'us-east-1',
      targets: { env: 'DB_PASSWORD', env_base64: false, file_mode: 0o400 },
      required: true,
    },
    {
      name: 'token',
      source: {
        kind: 's3',
        bucket: 'my-bucket',
        key: 'boot/token.enc',
        format: 'base64',
        region: 'eu-west-1',
      },
      targets: { env: 'TOKEN', env_base64: true, file: 'token', file_mode: 0o440 },
      required: false,
    },
    {
      name: 'from-ssm',
      source: { kind: 'ssm', name: '/app/secret', endpoint: 'http://127.0.0.1:4566' },
      targets: { env: 'FROM_SSM', env_base64: false, file_mode: 0o400 },
      required: true,
    },
    {
      name: 'from-sm',
      source: { kind: 'secretsmanager', id: 'app/secret', version_stage: 'AWSPREVIOUS' },
      targets: { env: 'FROM_SM', env_base64: false, file_mode: 0o400 },
      required: true,
    },
  ]);
});

/** One secret entry (lines 2-4 of cloister.yaml after `secrets:`), with `extra` lines after. */
const entry = (source: string, targets = '{ env: X }', extra = '') =>
  `secrets:\n  - name: s\n    source: ${source}\n    targets: ${targets}\n${extra}`;

const bad: {
  name: string;
  settings: string;
  manifest?: string;
  keyPath: string;
  line: number;
  match: string;
}[] = [
  {
    name: 'no source kind',
    settings: entry('{ region: us-east-1 }'),
    keyPath: 'secrets[0].source',
    line: 3,
    match: 'needs one of inline, file, s3, ssm, secretsmanager',
  },
  {
    name: 'two source kinds',
    settings: entry(`{ inline: "${CT}", file: x.enc }`),
    keyPath: 'secrets[0].source',
    line: 3,
    match: 'has inline and file: give exactly one source',
  },
  {
    name: 'inline not base64',
    settings: entry('{ inline: "not base64!" }'),
    keyPath: 'secrets[0].source.inline',
    line: 3,
    match: 'must be a KMS ciphertext in base64',
  },
  {
    name: 'inline too long',
    settings: entry(`{ inline: "${'A'.repeat(8200)}" }`),
    keyPath: 'secrets[0].source.inline',
    line: 3,
    match: 'longer than any KMS ciphertext (at most 6144)',
  },
  {
    name: 'region on an inline source',
    settings: entry(`{ inline: "${CT}", region: us-east-1 }`),
    keyPath: 'secrets[0].source.region',
    line: 3,
    match: 'only an s3, ssm or secretsmanager source takes region',
  },
  {
    name: 'format on ssm',
    settings: entry('{ ssm: { name: x }, format: base64 }'),
    keyPath: 'secrets[0].source.format',
    line: 3,
    match: 'only a file or s3 source takes format',
  },
  {
    name: 'bad endpoint',
    settings: entry('{ ssm: { name: x }, endpoint: "ftp://x" }'),
    keyPath: 'secrets[0].source.endpoint',
    line: 3,
    match: 'scheme must be http or https',
  },
  {
    name: 's3 without key',
    settings: entry('{ s3: { bucket: b } }'),
    keyPath: 'secrets[0].source.s3.key',
    line: 3,
    match: 'missing required key "key"',
  },
  {
    name: 'bad region',
    settings: entry(`{ inline: "${CT}" }`, '{ env: X }', '    region: Mars\n'),
    keyPath: 'secrets[0].region',
    line: 5,
    match: '"Mars" is not an AWS region',
  },
  {
    name: 'no target',
    settings: entry(`{ inline: "${CT}" }`, '{}'),
    keyPath: 'secrets[0].targets',
    line: 4,
    match: 'needs at least one of env, file, ingress_tls',
  },
  {
    name: 'bad env name',
    settings: entry(`{ inline: "${CT}" }`, '{ env: 1X }'),
    keyPath: 'secrets[0].targets.env',
    line: 4,
    match: '"1X" is not an environment variable name',
  },
  {
    name: 'file outside the RAM directory',
    settings: entry(`{ inline: "${CT}" }`, '{ file: ../etc/passwd }'),
    keyPath: 'secrets[0].targets.file',
    line: 4,
    match: 'must be a file name inside the RAM directory',
  },
  {
    name: 'file mode not octal',
    settings: entry(`{ inline: "${CT}" }`, '{ file: f, file_mode: "0800" }'),
    keyPath: 'secrets[0].targets.file_mode',
    line: 4,
    match: 'is not a file mode (octal, e.g. "0400")',
  },
  {
    name: 'file mode as a number',
    settings: entry(`{ inline: "${CT}" }`, '{ file: f, file_mode: 400 }'),
    keyPath: 'secrets[0].targets.file_mode',
    line: 4,
    match: 'must be a string, got the number 400 (quote it: "400")',
  },
  {
    name: 'file_mode without file',
    settings: entry(`{ inline: "${CT}" }`, '{ env: X, file_mode: "0400" }'),
    keyPath: 'secrets[0].targets.file_mode',
    line: 4,
    match: 'file_mode needs file',
  },
  {
    name: 'unknown target',
    settings: entry(`{ inline: "${CT}" }`, '{ env: X, path: x }'),
    keyPath: 'secrets[0].targets.path',
    line: 4,
    match: 'unknown key "path"; allowed keys: env, env_base64, file, file_mode, ingress_tls',
  },
  {
    name: 'bad name',
    settings: entry(`{ inline: "${CT}" }`).replace('name: s', 'name: "a b"'),
    keyPath: 'secrets[0].name',
    line: 2,
    match: '"a b" is not a secret name',
  },
  {
    name: 'duplicate env',
    settings: `${entry(`{ inline: "${CT}" }`)}  - name: t\n    source: { inline: "${CT}" }\n    targets: { env: X }\n`,
    keyPath: 'secrets[1].targets.env',
    line: 7,
    match: 'environment variable X is already used by secrets[0].targets.env (line 4)',
  },
  {
    name: 'ingress_tls on a port without tls',
    settings: entry(`{ inline: "${CT}" }`, '{ ingress_tls: 8080 }'),
    keyPath: 'secrets[0].targets.ingress_tls',
    line: 4,
    match: 'port 8080 is not an ingress port with a tls block in',
  },
  {
    name: 'secrets without egress',
    manifest: BASE,
    settings: entry(`{ inline: "${CT}" }`),
    keyPath: 'secrets',
    line: 1,
    match:
      'boot-time secrets are decrypted by KMS (and fetched from S3, SSM, Secrets Manager) through the egress proxy, but egress is not enabled',
  },
];

describe('bad secrets name the file, key path and line', () => {
  for (const c of bad) {
    test(c.name, () => {
      let err: ConfigError | undefined;
      try {
        loadConfig(findConfigFiles(configDir(c.manifest ?? MANIFEST, c.settings)));
      } catch (e) {
        err = e as ConfigError;
      }
      assert.ok(err instanceof ConfigError, 'the config loaded');
      assert.equal(err.errors.length, 1, err.message);
      assert.ok(err.file.endsWith('cloister.yaml'), err.file);
      assert.equal(err.keyPath, c.keyPath, err.message);
      assert.equal(err.line, c.line, err.message);
      assert.ok(err.message.includes(c.match), err.message);
    });
  }
});
