// `cloister secrets encrypt`: the host side of boot-time secrets. Encrypts a plaintext (a file or stdin)
// under a KMS key with an encryption context and prints the cloister.yaml entry that decrypts it at the
// enclave's start (docs/secrets.md):
//   - real KMS, with the caller's credentials (environment, container, IMDS: the same chain as the KMS
//     proxy, dialled directly here) and the key given by --key;
//   - --dev: the KMS emulator's keys under `cloister dev`'s state directory; the key (an alias, created if
//     missing) gets the policy `cloister dev` prints for this manifest and app, bound to its dev PCR0.
// Encrypt needs no attestation: only Decrypt does. The plaintext is never printed or logged.
import { readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { stringify } from 'yaml';
import { intFlag, splitAppArgv, UsageError } from '../cli-args.ts';
import { secretsToYaml } from '../config/secrets.ts';
import type { SecretSpec } from '../config/types.ts';
import { CredentialChain } from '../kms/credentials.ts';
import { KmsUpstream } from '../kms/upstream.ts';
import { createLogger } from '../log/logger.ts';
import { awsErrorCode } from './aws.ts';
import { regionOfKeyId } from './decrypt.ts';

export const SECRETS_USAGE = `usage: cloister secrets encrypt --name NAME [--in FILE] [--context K=V]...
                                [--env VAR [--env-base64]] [--file PATH] [--ingress-tls PORT] [--optional]
                                [--out FILE] (--key KEY [--region R] [--endpoint URL]
                                              | --dev [--state-dir DIR] [--key alias/NAME] -f enclaver.yaml -- app...)

Encrypts the plaintext (--in FILE, else stdin) under a KMS key with the encryption context and prints
the cloister.yaml entry (under secrets:) that decrypts it, attested, when the enclave starts:
  --name NAME        the secret's name (in messages and the status stream)
  --env VAR          target: an environment variable of the app (--env-base64: the plaintext base64-encoded)
  --file PATH        target: a file in the RAM directory (mode 0400, owned by the app's uid)
  --ingress-tls PORT target: the private key of that ingress port's TLS (the manifest's tls block)
  --optional         the app starts even if this secret fails (default: required)
  --out FILE         write the ciphertext to FILE (binary) and print a file source, not an inline one
  --key KEY          key id, key ARN or alias; real KMS with your credentials (environment or IMDS)
  --region R         KMS region (default: the key ARN's, else $AWS_REGION)
  --endpoint URL     KMS endpoint override (a full URL or host[:port])
  --dev              the KMS emulator of \`cloister dev --state-dir DIR\` (default ./.state); the key
                     (default alias/cloister-dev) is created if missing, and its policy set to the one
                     \`cloister dev -f enclaver.yaml -- app...\` prints: Decrypt only with that dev PCR0

exit status: 0 printed, 1 KMS refused or failed, 2 usage error.
`;

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    allowPositionals: true,
    options: {
      name: { type: 'string' },
      in: { type: 'string' },
      context: { type: 'string', multiple: true },
      env: { type: 'string' },
      'env-base64': { type: 'boolean' },
      file: { type: 'string' },
      'ingress-tls': { type: 'string' },
      optional: { type: 'boolean' },
      out: { type: 'string' },
      key: { type: 'string' },
      region: { type: 'string' },
      endpoint: { type: 'string' },
      dev: { type: 'boolean' },
      'state-dir': { type: 'string' },
      manifest: { type: 'string', short: 'f' },
      settings: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}

/** What `encrypt` needs, from the flags. */
interface EncryptRequest {
  spec: Omit<SecretSpec, 'source'>;
  plaintext: Buffer;
  out?: string;
}

function request(values: ReturnType<typeof parse>['values']): EncryptRequest {
  const name = values.name;
  if (!name) throw new UsageError('--name is required');
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/.test(name))
    throw new UsageError(`--name '${name}' is not a secret name`);
  const context: Record<string, string> = {};
  for (const c of values.context ?? []) {
    const eq = c.indexOf('=');
    if (eq <= 0) throw new UsageError(`--context takes KEY=VALUE, not '${c}'`);
    context[c.slice(0, eq)] = c.slice(eq + 1);
  }
  if (values.env !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(values.env))
    throw new UsageError(`--env '${values.env}' is not an environment variable name`);
  if (values['env-base64'] && values.env === undefined) throw new UsageError('--env-base64 needs --env');
  const port = intFlag(values['ingress-tls'], '--ingress-tls', 1, 65535);
  if (values.env === undefined && values.file === undefined && port === undefined)
    throw new UsageError('give a target: --env, --file or --ingress-tls');
  const plaintext = readFileSync(values.in ?? 0);
  if (plaintext.length === 0 || plaintext.length > 4096)
    throw new UsageError(`the plaintext is ${plaintext.length} bytes: KMS Encrypt takes 1 to 4096`);
  return {
    plaintext,
    out: values.out,
    spec: {
      name,
      ...(Object.keys(context).length > 0 ? { encryption_context: context } : {}),
      targets: {
        ...(values.env !== undefined ? { env: values.env } : {}),
        env_base64: values['env-base64'] ?? false,
        ...(values.file !== undefined ? { file: values.file } : {}),
        file_mode: 0o400,
        ...(port !== undefined ? { ingress_tls: port } : {}),
      },
      required: !values.optional,
    },
  };
}

/** One KMS JSON call; KMS's refusal as an Error naming its exception. */
async function call(
  kms: KmsUpstream,
  region: string,
  action: string,
  input: Record<string, unknown>,
): Promise<Record<string, unknown>> {
  const reply = await kms.send(
    await kms.sign(region, `TrentService.${action}`, Buffer.from(JSON.stringify(input), 'utf8')),
  );
  if (reply.status !== 200) {
    const { code, message } = awsErrorCode(reply);
    throw new Error(`KMS ${action} refused: ${code}${message ? `: ${message}` : ''}`);
  }
  return JSON.parse(reply.body.toString('utf8')) as Record<string, unknown>;
}

/** Encrypts and returns the ciphertext and the key's ARN (what the entry's key_id pins). */
async function encrypt(
  kms: KmsUpstream,
  region: string,
  keyId: string,
  plaintext: Buffer,
  context: Record<string, string> | undefined,
): Promise<{ ciphertext: Buffer; keyArn: string }> {
  const out = await call(kms, region, 'Encrypt', {
    KeyId: keyId,
    Plaintext: plaintext.toString('base64'),
    ...(context ? { EncryptionContext: context } : {}),
  });
  if (typeof out.CiphertextBlob !== 'string')
    throw new Error('KMS Encrypt answered without a CiphertextBlob');
  return { ciphertext: Buffer.from(out.CiphertextBlob, 'base64'), keyArn: String(out.KeyId ?? keyId) };
}

/** The dev key: the alias, created if missing, with the policy `cloister dev` prints for `pcr0`. */
async function devKey(kms: KmsUpstream, region: string, alias: string, policy: string): Promise<string> {
  const aliases = (await call(kms, region, 'ListAliases', {})).Aliases as {
    AliasName: string;
    TargetKeyId?: string;
  }[];
  let keyId = aliases.find((a) => a.AliasName === alias)?.TargetKeyId;
  if (!keyId) {
    const made = await call(kms, region, 'CreateKey', {
      Policy: policy,
      Description: 'cloister dev boot-time secrets',
    });
    keyId = String((made.KeyMetadata as { KeyId: string }).KeyId);
    await call(kms, region, 'CreateAlias', { AliasName: alias, TargetKeyId: keyId });
  } else {
    await call(kms, region, 'PutKeyPolicy', { KeyId: keyId, PolicyName: 'default', Policy: policy });
  }
  return alias;
}

/** `cloister secrets encrypt --dev`'s KMS (src/dev/secrets.ts, handed in by src/cli.ts: dev/ is above). */
export interface DevKms {
  kms: KmsUpstream;
  region: string;
  /** The key policy `cloister dev` prints for the manifest and app. */
  policy: string;
  close(): Promise<void>;
}

export type OpenDevKms = (o: {
  stateDir: string;
  manifestPath: string;
  settingsPath?: string;
  app: string[];
  region?: string;
}) => Promise<DevKms>;

export async function run(argv: string[], devKms?: () => Promise<OpenDevKms>): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help') {
    process.stdout.write(SECRETS_USAGE);
    return sub === undefined ? 2 : 0;
  }
  let values: ReturnType<typeof parse>['values'];
  let app: string[];
  let req: EncryptRequest;
  try {
    if (sub !== 'encrypt') throw new UsageError(`unknown subcommand '${sub}'`);
    const split = splitAppArgv(rest);
    app = split.app;
    const parsed = parse(split.own);
    values = parsed.values;
    if (values.help) {
      process.stdout.write(SECRETS_USAGE);
      return 0;
    }
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    if (values.dev) {
      if (values.endpoint !== undefined) throw new UsageError('--endpoint is for real KMS, not --dev');
      if (app.length === 0)
        throw new UsageError('--dev needs the app after `--` (its dev PCR0 binds the key)');
    } else {
      if (!values.key) throw new UsageError('--key is required (or --dev)');
      if (values['state-dir'] || values.manifest || app.length > 0)
        throw new UsageError('--state-dir, -f and the app are for --dev');
    }
    req = request(values);
  } catch (err) {
    if (!(err instanceof UsageError) && !(err as NodeJS.ErrnoException).code?.startsWith('ERR_PARSE_ARGS'))
      throw err;
    process.stderr.write(`cloister secrets: ${(err as Error).message}\n${SECRETS_USAGE}`);
    return 2;
  }
  const logger = createLogger({ name: 'cloister-secrets', level: 'warn' });
  const closers: (() => Promise<void> | void)[] = [];
  try {
    let kms: KmsUpstream;
    let region: string;
    let keyId: string;
    if (values.dev) {
      if (!devKms) throw new Error('--dev is not available in this build');
      const emulator = await (await devKms())({
        stateDir: resolve(values['state-dir'] ?? '.state'),
        manifestPath: resolve(values.manifest ?? 'enclaver.yaml'),
        settingsPath: values.settings,
        app,
        region: values.region,
      });
      closers.push(() => emulator.close());
      ({ kms, region } = emulator);
      keyId = await devKey(kms, region, values.key ?? 'alias/cloister-dev', emulator.policy);
    } else {
      keyId = values.key!;
      const r =
        values.region ?? regionOfKeyId(keyId) ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION;
      if (!r) throw new Error('no region: give --region, a key ARN, or set AWS_REGION');
      region = r;
      const credentials = new CredentialChain({ egress: null, logger });
      closers.push(() => credentials.close());
      kms = new KmsUpstream({
        endpoints: values.endpoint ? { [region]: values.endpoint } : {},
        egress: null,
        timeoutMs: 30_000,
        credentials: () => credentials.get(),
      });
    }
    closers.push(() => kms.close());
    const { ciphertext, keyArn } = await encrypt(
      kms,
      region,
      keyId,
      req.plaintext,
      req.spec.encryption_context,
    );
    req.plaintext.fill(0);
    let source: SecretSpec['source'];
    if (req.out) {
      writeFileSync(req.out, ciphertext);
      source = { kind: 'file', path: req.out, format: 'binary' };
    } else {
      source = { kind: 'inline', ciphertext: ciphertext.toString('base64') };
    }
    const entry: SecretSpec = { ...req.spec, source, key_id: keyArn, region };
    process.stdout.write(stringify({ secrets: secretsToYaml([entry]) }, { lineWidth: 0 }));
    return 0;
  } catch (err) {
    process.stderr.write(`cloister secrets: ${(err as Error).message}\n`);
    return 1;
  } finally {
    for (const c of closers.reverse()) await c();
  }
}
