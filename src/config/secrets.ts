// cloister.yaml `secrets:`: boot-time secrets (docs/secrets.md). Each problem names the file, the key
// path (`secrets[1].source`) and the line, as every other setting. Checks that need the manifest too
// (egress on, the ingress_tls port) are in checkSecretsAgainstManifest, run by load.ts.
import { isAbsolute, normalize, resolve, sep } from 'node:path';
import type { Node } from 'yaml';
import { checkKmsEndpoint } from './manifest.ts';
import {
  bool,
  dict,
  list,
  obj,
  oneOf,
  opt,
  port,
  refine,
  req,
  type Schema,
  str,
  strictStr,
  type YamlSource,
} from './schema.ts';
import type { Manifest, SecretSource, SecretSpec } from './types.ts';

/** Largest KMS CiphertextBlob (the Decrypt model's CiphertextType: 1..6144 bytes). */
export const MAX_CIPHERTEXT_BYTES = 6144;

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const ENV_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const REGION_RE = /^[a-z]{2}(?:-[a-z]+)+-\d+$/;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

const checked = (re: RegExp, what: string) =>
  refine(strictStr(), (v) => (re.test(v) ? undefined : `"${v}" is not ${what}`));

const endpoint = refine(str(), checkKmsEndpoint);
const region = checked(REGION_RE, 'an AWS region (e.g. us-east-1)');
const format = oneOf(['binary', 'base64']);

/** A file name inside the RAM directory: relative, no `..`. */
function ramFileName(v: string): string | undefined {
  const n = normalize(v);
  if (isAbsolute(v) || n === '..' || n.startsWith(`..${sep}`) || n === '.' || v.endsWith('/'))
    return `"${v}" must be a file name inside the RAM directory (ram_dir.path): relative, without ".."`;
  return undefined;
}

function inlineCiphertext(v: string): string | undefined {
  const compact = v.replace(/\s+/g, '');
  if (compact === '' || !BASE64_RE.test(compact)) return 'must be a KMS ciphertext in base64';
  const bytes = Buffer.from(compact, 'base64').length;
  if (bytes > MAX_CIPHERTEXT_BYTES)
    return `${bytes} bytes is longer than any KMS ciphertext (at most ${MAX_CIPHERTEXT_BYTES})`;
  return undefined;
}

const SOURCE_KINDS = ['inline', 'file', 's3', 'ssm', 'secretsmanager'] as const;

const sourceSchema = obj({
  inline: opt(refine(strictStr(), inlineCiphertext)),
  file: opt(strictStr()),
  s3: opt(obj({ bucket: req(strictStr()), key: req(strictStr()) })),
  ssm: opt(obj({ name: req(strictStr()) })),
  secretsmanager: opt(obj({ id: req(strictStr()), version_stage: opt(strictStr()) })),
  format: opt(format),
  region: opt(region),
  endpoint: opt(endpoint),
});

const secretSchema = obj({
  name: req(checked(NAME_RE, 'a secret name (letters, digits, _ . -; at most 128)')),
  source: req(sourceSchema),
  key_id: opt(strictStr()),
  encryption_context: opt(dict(strictStr())),
  region: opt(region),
  targets: req(
    obj({
      env: opt(checked(ENV_RE, 'an environment variable name')),
      env_base64: opt(bool()),
      file: opt(refine(strictStr(), ramFileName)),
      file_mode: opt(
        refine(strictStr(), (v) =>
          /^0?[0-7]{3}$/.test(v) ? undefined : `"${v}" is not a file mode (octal, e.g. "0400")`,
        ),
      ),
      ingress_tls: opt(port()),
    }),
  ),
  required: opt(bool()),
});

/** The `secrets:` schema: a list of secrets (invalid items are dropped after their problems are recorded). */
export const secretsSchema: Schema<(Record<string, unknown> | undefined)[]> = list(
  secretSchema,
  'a list of secrets (mappings with keys name, source, key_id, encryption_context, region, targets, required)',
);

type Raw = Record<string, unknown>;

/** The typed secrets from what the schema parsed, with the checks across fields and entries. */
export function toSecretSpecs(
  parsed: (Raw | undefined)[],
  src: YamlSource,
  settingsDir: string,
): SecretSpec[] {
  const out: SecretSpec[] = [];
  const firstUse = new Map<string, string>();
  const at = (path: string): Node | undefined => src.nodes.get(path);
  /** Reports `what` at `path` if `key` was already used by an earlier secret. */
  const unique = (kind: string, key: string, path: string, what: string): boolean => {
    const k = `${kind}\0${key}`;
    const before = firstUse.get(k);
    if (before !== undefined) {
      src.report(at(path), path, `${what} is already used by ${before} (line ${src.lineOf(at(before))})`);
      return false;
    }
    firstUse.set(k, path);
    return true;
  };

  for (const [i, item] of parsed.entries()) {
    if (!item?.name || !item.source || !item.targets) continue;
    const p = `secrets[${i}]`;
    let ok = unique('name', item.name as string, `${p}.name`, `secret name "${item.name}"`);
    const s = item.source as Raw;
    // What the file says (an invalid value was already reported, and is missing from `s`).
    const written = (path: string, keys: readonly string[]) =>
      keys.filter((k) => src.nodes.has(`${path}.${k}`));
    const kinds = written(`${p}.source`, SOURCE_KINDS);
    if (kinds.length !== 1) {
      src.report(
        at(`${p}.source`),
        `${p}.source`,
        kinds.length === 0
          ? `needs one of ${SOURCE_KINDS.join(', ')}`
          : `has ${kinds.join(' and ')}: give exactly one source`,
      );
      continue;
    }
    const kind = kinds[0] as (typeof SOURCE_KINDS)[number];
    if (s[kind] === undefined) continue;
    const fetched = kind === 's3' || kind === 'ssm' || kind === 'secretsmanager';
    for (const k of ['region', 'endpoint'] as const) {
      if (s[k] !== undefined && !fetched) {
        src.report(
          at(`${p}.source.${k}`),
          `${p}.source.${k}`,
          `only an s3, ssm or secretsmanager source takes ${k}`,
        );
        ok = false;
      }
    }
    if (s.format !== undefined && kind !== 'file' && kind !== 's3') {
      src.report(at(`${p}.source.format`), `${p}.source.format`, 'only a file or s3 source takes format');
      ok = false;
    }
    const where = { region: s.region as string | undefined, endpoint: s.endpoint as string | undefined };
    let source: SecretSource;
    switch (kind) {
      case 'inline':
        source = { kind, ciphertext: (s.inline as string).replace(/\s+/g, '') };
        break;
      case 'file': {
        const f = s.file as string;
        source = {
          kind,
          path: isAbsolute(f) ? f : resolve(settingsDir, f),
          format: (s.format as 'binary' | 'base64') ?? 'binary',
        };
        break;
      }
      case 's3': {
        const o = s.s3 as { bucket: string; key: string };
        source = { kind, bucket: o.bucket, key: o.key, format: (s.format as 'binary') ?? 'binary', ...where };
        break;
      }
      case 'ssm':
        source = { kind, name: (s.ssm as { name: string }).name, ...where };
        break;
      case 'secretsmanager': {
        const o = s.secretsmanager as { id: string; version_stage?: string };
        source = { kind, id: o.id, ...(o.version_stage ? { version_stage: o.version_stage } : {}), ...where };
        break;
      }
    }
    for (const k of ['region', 'endpoint'] as const)
      if ((source as Raw)[k] === undefined) delete (source as Raw)[k];

    const t = item.targets as Raw;
    const tp = `${p}.targets`;
    const targetKeys = ['env', 'env_base64', 'file', 'file_mode', 'ingress_tls'];
    if (written(tp, ['env', 'file', 'ingress_tls']).length === 0) {
      src.report(at(tp), tp, 'needs at least one of env, file, ingress_tls');
      ok = false;
    }
    if (written(tp, targetKeys).some((k) => t[k] === undefined)) ok = false;
    if (t.env !== undefined)
      ok = unique('env', t.env as string, `${tp}.env`, `environment variable ${t.env}`) && ok;
    if (t.file !== undefined)
      ok = unique('file', normalize(t.file as string), `${tp}.file`, `file ${t.file}`) && ok;
    if (t.ingress_tls !== undefined)
      ok =
        unique('tls', String(t.ingress_tls), `${tp}.ingress_tls`, `the TLS key of port ${t.ingress_tls}`) &&
        ok;
    if (t.env_base64 !== undefined && t.env === undefined) {
      src.report(at(`${tp}.env_base64`), `${tp}.env_base64`, 'env_base64 needs env');
      ok = false;
    }
    if (t.file_mode !== undefined && t.file === undefined) {
      src.report(at(`${tp}.file_mode`), `${tp}.file_mode`, 'file_mode needs file');
      ok = false;
    }
    if (!ok) continue;
    out.push({
      name: item.name as string,
      source,
      ...(item.key_id !== undefined ? { key_id: item.key_id as string } : {}),
      ...(item.encryption_context !== undefined
        ? { encryption_context: item.encryption_context as Record<string, string> }
        : {}),
      ...(item.region !== undefined ? { region: item.region as string } : {}),
      targets: {
        ...(t.env !== undefined ? { env: t.env as string } : {}),
        env_base64: (t.env_base64 as boolean | undefined) ?? false,
        ...(t.file !== undefined ? { file: normalize(t.file as string) } : {}),
        file_mode: t.file_mode === undefined ? 0o400 : Number.parseInt(t.file_mode as string, 8),
        ...(t.ingress_tls !== undefined ? { ingress_tls: t.ingress_tls as number } : {}),
      },
      required: (item.required as boolean | undefined) ?? true,
    });
  }
  return out;
}

export const SECRETS_WITHOUT_EGRESS =
  "boot-time secrets are decrypted by KMS (and fetched from S3, SSM, Secrets Manager) through the egress proxy, but egress is not enabled: list the KMS endpoint (and IMDS, 169.254.169.254) in the manifest's egress.allow";

/** Checks of `secrets:` against the manifest: egress must be on; an ingress_tls port must be a TLS ingress port. */
export function checkSecretsAgainstManifest(
  secrets: SecretSpec[],
  manifest: Manifest,
  egressOn: boolean,
  src: YamlSource,
  manifestFile: string,
): void {
  if (secrets.length === 0) return;
  if (!egressOn) src.report(src.keyNodes.get('secrets'), 'secrets', SECRETS_WITHOUT_EGRESS);
  const tlsPorts = new Set((manifest.ingress ?? []).filter((e) => e.tls).map((e) => e.listen_port));
  for (const [i, s] of secrets.entries()) {
    const port = s.targets.ingress_tls;
    if (port === undefined || tlsPorts.has(port)) continue;
    // Index of the entry in the file (invalid entries were dropped): find it by name.
    const path = findPath(src, s.name, i);
    src.report(
      src.nodes.get(`${path}.targets.ingress_tls`),
      `${path}.targets.ingress_tls`,
      `port ${port} is not an ingress port with a tls block in ${manifestFile}`,
    );
  }
}

function findPath(src: YamlSource, name: string, fallback: number): string {
  for (let i = 0; src.nodes.has(`secrets[${i}]`); i++) {
    const n = src.nodes.get(`secrets[${i}].name`) as { value?: unknown } | undefined;
    if (n?.value === name) return `secrets[${i}]`;
  }
  return `secrets[${fallback}]`;
}

/**
 * The cloister.yaml form of typed secrets (what toSecretSpecs reads back to the same specs): for the
 * config `cloister dev` derives, and the entry `cloister secrets encrypt` prints.
 */
export function secretsToYaml(specs: SecretSpec[]): Record<string, unknown>[] {
  return specs.map((s) => {
    const src = s.source;
    const where = (o: { region?: string; endpoint?: string }) => ({
      ...(o.region !== undefined ? { region: o.region } : {}),
      ...(o.endpoint !== undefined ? { endpoint: o.endpoint } : {}),
    });
    let source: Record<string, unknown>;
    switch (src.kind) {
      case 'inline':
        source = { inline: src.ciphertext };
        break;
      case 'file':
        source = { file: src.path, ...(src.format !== 'binary' ? { format: src.format } : {}) };
        break;
      case 's3':
        source = {
          s3: { bucket: src.bucket, key: src.key },
          ...(src.format !== 'binary' ? { format: src.format } : {}),
          ...where(src),
        };
        break;
      case 'ssm':
        source = { ssm: { name: src.name }, ...where(src) };
        break;
      case 'secretsmanager':
        source = {
          secretsmanager: { id: src.id, ...(src.version_stage ? { version_stage: src.version_stage } : {}) },
          ...where(src),
        };
        break;
    }
    const t = s.targets;
    return {
      name: s.name,
      source,
      ...(s.key_id !== undefined ? { key_id: s.key_id } : {}),
      ...(s.encryption_context !== undefined ? { encryption_context: s.encryption_context } : {}),
      ...(s.region !== undefined ? { region: s.region } : {}),
      targets: {
        ...(t.env !== undefined ? { env: t.env } : {}),
        ...(t.env_base64 ? { env_base64: true } : {}),
        ...(t.file !== undefined ? { file: t.file } : {}),
        ...(t.file !== undefined && t.file_mode !== 0o400
          ? { file_mode: `0${t.file_mode.toString(8)}` }
          : {}),
        ...(t.ingress_tls !== undefined ? { ingress_tls: t.ingress_tls } : {}),
      },
      ...(s.required ? {} : { required: false }),
    };
  });
}
