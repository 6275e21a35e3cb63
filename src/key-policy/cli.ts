// cloister kms policy --role ARN --admin ARN (--image-sha384 HEX | --pcr N=HEX... | --nitrotpm-pcr N=HEX...)
// cloister kms policy --lint FILE [--json]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli-args.ts';
import { keyPolicy } from './generate.ts';
import { formatReport, lintPolicy } from './lint.ts';

export const KMS_USAGE = `usage: cloister kms policy --role ARN --admin ARN [--image-sha384 HEX] [--pcr N=HEX]...
                           [--nitrotpm-pcr N=HEX]... [--action NAME]...
       cloister kms policy --lint FILE|- [--json]

Prints a least-privilege KMS key policy (JSON) for a key only the measured enclave may decrypt:
  --role ARN            the enclave's instance role: Decrypt (and --action) only with an attestation
                        document carrying the given measurements; Encrypt and DescribeKey without
  --admin ARN           the key administrator: key management and Encrypt, never a plaintext
  --image-sha384 HEX    PCR0 of the EIF (kms:RecipientAttestation:ImageSha384), 96 hex characters
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
      const generating = ['role', 'admin', 'image-sha384', 'pcr', 'nitrotpm-pcr', 'action'];
      const extra = generating.find((f) => values[f as keyof typeof values] !== undefined);
      if (extra) throw new UsageError(`--lint takes no --${extra}: it reads everything from the policy`);
      return lint(values.lint, values.json === true);
    }
    if (values.json) throw new UsageError('--json goes with --lint (the policy itself is JSON)');
    if (!values.role || !values.admin) throw new UsageError('--role and --admin are required');
    const policy = keyPolicy({
      role: values.role,
      admin: values.admin,
      imageSha384: values['image-sha384'],
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
