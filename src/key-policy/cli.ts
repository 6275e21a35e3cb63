// cloister kms policy --role ARN --admin ARN (--image-sha384 HEX | --pcr N=HEX... | --nitrotpm-pcr N=HEX...)
// cloister kms policy --lint FILE [--json]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli-args.ts';
import { pcrValueProblem } from './condition-keys.ts';
import { keyPolicy } from './generate.ts';
import { formatReport, lintPolicy } from './lint.ts';

export const KMS_USAGE = `usage: cloister kms policy --role ARN --admin ARN [--image-sha384 HEX | --measurements FILE]
                           [--pcr N=HEX]... [--nitrotpm-pcr N=HEX]... [--action NAME]...
       cloister kms policy --lint FILE|- [--json]

Prints a least-privilege KMS key policy (JSON) for a key only the measured enclave may decrypt:
  --role ARN            the enclave's instance role: Decrypt (and --action) only with an attestation
                        document carrying the given measurements; Encrypt and DescribeKey without
  --admin ARN           the key administrator: key management and Encrypt, never a plaintext
  --image-sha384 HEX    PCR0 of the EIF (kms:RecipientAttestation:ImageSha384), 96 hex characters
  --measurements FILE   the same, read from \`nitro-cli build-enclave\` or \`describe-eif\` JSON output
  --pcr N=HEX           a Nitro Enclave PCR (kms:RecipientAttestation:PCR<N>), repeatable
  --nitrotpm-pcr N=HEX  a NitroTPM PCR (kms:RecipientAttestation:NitroTPMPCR<N>), repeatable
  --action NAME         Decrypt, GenerateDataKey, GenerateDataKeyPair or DeriveSharedSecret, repeatable
                        (default: Decrypt, GenerateDataKey, GenerateDataKeyPair)

--lint FILE evaluates a key policy (or \`aws kms get-key-policy\` output; - reads stdin) as KMS does
and reports who can get a plaintext without an attestation document, conditions any enclave
satisfies, unknown condition keys and malformed PCR values. --json prints the report as JSON.

exit status: 0 no error found (or a policy printed), 1 errors found, 2 usage error.
`;

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    options: {
      role: { type: 'string' },
      admin: { type: 'string' },
      'image-sha384': { type: 'string' },
      measurements: { type: 'string' },
      pcr: { type: 'string', multiple: true },
      'nitrotpm-pcr': { type: 'string', multiple: true },
      action: { type: 'string', multiple: true },
      lint: { type: 'string' },
      json: { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
    allowPositionals: false,
  }).values;
}

/** `N=HEX` flags into an index -> value map; the index is checked by the generator. */
function indexed(flag: string, items: string[] | undefined): Record<number, string> {
  const out: Record<number, string> = {};
  for (const item of items ?? []) {
    const m = /^(\d{1,2})=(.*)$/.exec(item);
    if (!m) throw new UsageError(`${flag} takes N=HEX (e.g. ${flag} 8=<96 hex characters>), not '${item}'`);
    if (Object.hasOwn(out, Number(m[1]))) throw new UsageError(`${flag} ${m[1]} is given twice`);
    out[Number(m[1])] = m[2]!;
  }
  return out;
}

/**
 * PCR0 from --image-sha384, or from nitro-cli's JSON (`{"Measurements": {"PCR0": …}}`). Only PCR0: it
 * measures the whole EIF, so PCR1/PCR2 add nothing; pin PCR8 (the signing certificate) with --pcr 8=.
 */
function imageFlag(hex: string | undefined, file: string | undefined): string | undefined {
  if (file === undefined) return hex;
  if (hex !== undefined) throw new UsageError('give --image-sha384 or --measurements, not both');
  let pcr0: unknown;
  try {
    pcr0 = (JSON.parse(readFileSync(file, 'utf8')) as { Measurements?: { PCR0?: unknown } }).Measurements
      ?.PCR0;
  } catch (err) {
    throw new UsageError(
      `--measurements: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`,
    );
  }
  if (typeof pcr0 !== 'string')
    throw new UsageError(
      `--measurements: ${file} has no Measurements.PCR0 (nitro-cli build-enclave's output)`,
    );
  const wrong = pcrValueProblem(pcr0, { kind: 'nitro', pcr: 0 });
  if (wrong) throw new UsageError(`--measurements: Measurements.PCR0 in ${file} ${wrong.text}`);
  return pcr0;
}

export async function run(argv: string[]): Promise<number> {
  const [sub, ...rest] = argv;
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    process.stdout.write(KMS_USAGE);
    return sub === undefined ? 2 : 0;
  }
  try {
    if (sub !== 'policy') throw new UsageError(`unknown subcommand '${sub}'`);
    const values = parse(rest);
    if (values.help) {
      process.stdout.write(KMS_USAGE);
      return 0;
    }
    if (values.lint !== undefined) {
      const generating = ['role', 'admin', 'image-sha384', 'measurements', 'pcr', 'nitrotpm-pcr', 'action'];
      const extra = generating.find((f) => values[f as keyof typeof values] !== undefined);
      if (extra) throw new UsageError(`--lint takes no --${extra}: it reads everything from the policy`);
      return lint(values.lint, values.json === true);
    }
    if (values.json) throw new UsageError('--json goes with --lint (the policy itself is JSON)');
    if (!values.role || !values.admin) throw new UsageError('--role and --admin are required');
    const policy = keyPolicy({
      role: values.role,
      admin: values.admin,
      imageSha384: imageFlag(values['image-sha384'], values.measurements),
      pcrs: indexed('--pcr', values.pcr),
      nitroTpmPcrs: indexed('--nitrotpm-pcr', values['nitrotpm-pcr']),
      actions: values.action,
    });
    process.stdout.write(`${JSON.stringify(policy, null, 2)}\n`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`cloister kms: ${(err as Error).message}\n${KMS_USAGE}`);
      return 2;
    }
    throw err;
  }
}

function lint(file: string, json: boolean): number {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    throw new UsageError(`--lint: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  const report = lintPolicy(text);
  const name = file === '-' ? '(stdin)' : file;
  process.stdout.write(
    json ? `${JSON.stringify({ file: name, ...report }, null, 2)}\n` : formatReport(name, report),
  );
  return report.ok ? 0 : 1;
}
