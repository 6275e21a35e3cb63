// Boot-time secrets (cloister.yaml `secrets:`, docs/secrets.md): before the app starts, each secret's
// KMS ciphertext is read (inline, a file of the image, S3, SSM, Secrets Manager), decrypted by KMS
// through the attested path (src/secrets/decrypt.ts), and placed: an environment variable of the app, a
// file in the RAM directory owned by the app's uid, the private key of an ingress TLS port.
//
// The app starts only when every required secret is ready; an optional one that fails is logged (name
// and error code) and skipped. Nothing about a plaintext is logged, counted or reported: not its bytes,
// not its length. Secrets are decrypted once per start of cloister; restarts of the app reuse what is
// held (the environment values in memory, the files where they were written): see docs/secrets.md.
import type { SecretSpec } from '../config/types.ts';
import { isSecretError, type SecretError, secretError } from '../errors.ts';
import { CredentialChain, type CredentialChainOptions } from '../kms/credentials.ts';
import type { EgressProxy } from '../kms/egress.ts';
import { RecipientKeys } from '../kms/recipient.ts';
import type { Logger } from '../log/logger.ts';
import type { Nsm } from '../nsm/types.ts';
import type { SecretsPlan } from '../plan/index.ts';
import type { LazyRamDir } from '../system/ram-dir.ts';
import { AwsAccess } from './aws.ts';
import { attestedDecrypt, regionOfKeyId } from './decrypt.ts';
import { describeSource, readCiphertext } from './source.ts';

export interface SecretsDeps {
  nsm: Pick<Nsm, 'attestation'>;
  /** The egress proxy as it bound (null: none runs; calls go direct, tests only). */
  egress: EgressProxy | null;
  logger: Logger;
  /** Where file targets go. */
  ramDir: LazyRamDir;
  /** Environment for credentials and the default region (default process.env). */
  env?: NodeJS.ProcessEnv;
  /** Test hook: credential chain options. */
  credentials?: Partial<CredentialChainOptions>;
}

export interface ReadySecrets {
  /** Variables for the app (raw plaintext, or base64 with env_base64). */
  env: Record<string, string>;
  /** Ingress port -> PEM private key. */
  tlsKeys: Map<number, Buffer>;
  /** Files written. */
  files: string[];
  /** Optional secrets that failed, with their error code. */
  skipped: { name: string; code: string; reason: string }[];
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** The plaintext as an environment value: base64, or the text itself if it can be one. */
function envValue(spec: SecretSpec, plaintext: Buffer): string {
  if (spec.targets.env_base64) return plaintext.toString('base64');
  let text: string | null = null;
  if (!plaintext.includes(0)) {
    try {
      text = utf8.decode(plaintext);
    } catch {}
  }
  if (text === null) {
    throw secretError(
      'target',
      spec.name,
      'CLO_ERR_SECRET_TARGET',
      `secret ${spec.name}: the plaintext has a NUL byte or is not UTF-8, which environment variable ${spec.targets.env} cannot carry (set env_base64: true)`,
    );
  }
  return text;
}

function regionOf(spec: SecretSpec, env: NodeJS.ProcessEnv): string {
  const r = spec.region ?? regionOfKeyId(spec.key_id) ?? env.AWS_REGION ?? env.AWS_DEFAULT_REGION;
  if (!r) {
    throw secretError(
      'decrypt',
      spec.name,
      'CLO_ERR_CONFIG',
      `secret ${spec.name}: no KMS region: set its region, a key ARN as key_id, or AWS_REGION`,
    );
  }
  return r;
}

/**
 * Makes every secret ready. Throws a SecretError naming each required secret that failed (the first
 * one's code and reason); resolves with what the app gets otherwise.
 */
export async function loadSecrets(plan: SecretsPlan, deps: SecretsDeps): Promise<ReadySecrets> {
  const ready: ReadySecrets = { env: {}, tlsKeys: new Map(), files: [], skipped: [] };
  if (plan.secrets.length === 0) return ready;
  const log = deps.logger.child({ component: 'secrets' });
  const env = deps.env ?? process.env;
  const t0 = performance.now();
  // The key pair and the credentials are made while the ciphertexts are read.
  const keys = new RecipientKeys();
  const credentials = new CredentialChain({ egress: deps.egress, logger: log, env, ...deps.credentials });
  credentials.start();
  const aws = new AwsAccess({
    egress: deps.egress,
    credentials,
    timeoutMs: plan.timeoutMs,
    kmsEndpoints: plan.kmsEndpoints,
  });

  // Every secret needs the credentials (KMS at least): one failure message rather than a signing error each.
  const haveCredentials = credentials.get().then(
    () => null,
    (err: Error) => err,
  );

  const one = async (spec: SecretSpec): Promise<void> => {
    const s0 = performance.now();
    const region = regionOf(spec, env);
    const noCredentials = await haveCredentials;
    if (noCredentials) {
      const stage = spec.source.kind === 'inline' || spec.source.kind === 'file' ? 'decrypt' : 'source';
      throw secretError(
        stage,
        spec.name,
        'CLO_ERR_KMS_NO_CREDENTIALS',
        `secret ${spec.name}: no AWS credentials: ${noCredentials.message}`,
        { cause: noCredentials },
      );
    }
    const ciphertext = await readCiphertext(spec, region, aws);
    let key: Awaited<ReturnType<RecipientKeys['get']>>;
    try {
      key = await keys.get(plan.readyWaitMs);
    } catch (err) {
      throw secretError(
        'decrypt',
        spec.name,
        'CLO_ERR_KMS_NOT_READY',
        `secret ${spec.name}: ${(err as Error).message}`,
      );
    }
    const plaintext = await attestedDecrypt(spec, ciphertext, region, { aws, key, nsm: deps.nsm });
    try {
      const t = spec.targets;
      const placed: string[] = [];
      if (t.env !== undefined) {
        ready.env[t.env] = envValue(spec, plaintext);
        placed.push(`env ${t.env}`);
      }
      if (t.file !== undefined) {
        let path: string;
        try {
          const dir = await deps.ramDir.get();
          path = await dir.writeFile(t.file, plaintext, { mode: t.file_mode, ...plan.owner });
        } catch (err) {
          throw secretError(
            'target',
            spec.name,
            'CLO_ERR_SECRET_TARGET',
            `secret ${spec.name}: cannot write file ${t.file}: ${(err as Error).message}`,
            { cause: err },
          );
        }
        ready.files.push(path);
        placed.push(`file ${path}`);
      }
      if (t.ingress_tls !== undefined) {
        ready.tlsKeys.set(t.ingress_tls, Buffer.from(plaintext));
        placed.push(`TLS key of ingress port ${t.ingress_tls}`);
      }
      // Names and places only: never a byte or the length of the plaintext.
      log.info(
        {
          secret: spec.name,
          source: describeSource(spec.source),
          to: placed,
          ms: Math.round(performance.now() - s0),
        },
        'boot-time secret ready',
      );
    } finally {
      plaintext.fill(0);
    }
  };

  try {
    const results = await Promise.allSettled(plan.secrets.map((s) => one(s)));
    const failed: SecretError[] = [];
    for (const [i, r] of results.entries()) {
      if (r.status === 'fulfilled') continue;
      const spec = plan.secrets[i]!;
      const err = isSecretError(r.reason)
        ? r.reason
        : secretError(
            'decrypt',
            spec.name,
            'CLO_ERR_INTERNAL',
            `secret ${spec.name}: ${String((r.reason as Error)?.message ?? r.reason)}`,
          );
      if (spec.required) {
        failed.push(err);
        log.error({ secret: spec.name, code: err.code, reason: err.reason, err }, 'boot-time secret failed');
      } else {
        ready.skipped.push({ name: spec.name, code: err.code, reason: err.reason });
        log.warn(
          { secret: spec.name, code: err.code, reason: err.reason, err },
          'optional boot-time secret skipped',
        );
      }
    }
    if (failed.length > 0) {
      for (const k of ready.tlsKeys.values()) k.fill(0);
      const first = failed[0]!;
      const message =
        failed.length === 1
          ? first.message
          : `${failed.length} boot-time secrets failed: ${failed.map((e) => e.message).join('; ')}`;
      throw secretError(first.stage, first.secret, first.reason, message, { cause: first });
    }
    log.info(
      {
        secrets: plan.secrets.length - ready.skipped.length,
        skipped: ready.skipped.length,
        ms: Math.round(performance.now() - t0),
      },
      'boot-time secrets ready',
    );
    return ready;
  } finally {
    credentials.close();
    aws.close();
  }
}
