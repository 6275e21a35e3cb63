// `cloister attest verify|describe|root`: check, read and anchor attestation documents. `connect` and
// `proxy` (attested TLS) are src/attested-tls/cli.ts's, which hands them to run() below.
import { createPublicKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { UsageError } from '../cli-args.ts';
import { AttestedTlsConnectError } from '../errors.ts';
import { documentToJson } from './describe.ts';
import { AttestationError, decodeDocument } from './document.ts';
import { type VerifyOptions, verifyAttestation } from './verify.ts';

const USAGE = `usage:
  cloister attest verify [options] DOC     verify a document; print it as JSON (exit 0) or the failed check (exit 1)
  cloister attest describe DOC             print a document as JSON without verifying it
  cloister attest root --state-dir DIR     print the software NSM's root certificate (PEM), creating it if needed
  cloister attest connect HOST:PORT ...    verify an enclave's attested TLS certificate (cloister attest connect --help)
  cloister attest proxy --listen ADDR --to HOST:PORT ...
                                           forward local plain connections only to a verified enclave

DOC is a file of raw CBOR or base64, or - for standard input.

verify options:
  --root FILE          trusted root certificate(s), PEM (default: AWS Nitro Enclaves Root G1)
  --at TIME            validate the chain at TIME: ISO 8601, epoch milliseconds, "now" (default)
                       or "timestamp" (the document's own time, after the signature check)
  --pcr N=HEX          expected PCR value (repeatable)
  --nonce HEX          expected nonce
  --user-data HEX      expected user_data
  --public-key FILE    expected public_key (PEM or DER SubjectPublicKeyInfo)
  --max-age DUR        reject documents older than DUR (e.g. 300s, 5m, 3h; plain number = seconds)
  --reject-debug       reject debug-mode enclaves (PCR0 all zeros)
`;

function readInput(path: string): Buffer {
  return path === '-' ? readFileSync(0) : readFileSync(path);
}

/** Raw CBOR starts with 0x84 (array of 4) or 0xd2 (tag 18); anything else is read as base64 text. */
export function parseDocumentInput(data: Buffer): Buffer {
  const first = data[0];
  if (first === 0x84 || first === 0xd2) return data;
  const text = data.toString('latin1').replace(/\s+/g, '');
  if (text.length === 0) throw new AttestationError('decode', 'empty document');
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) {
    throw new AttestationError('decode', 'input is neither CBOR (COSE_Sign1) nor base64');
  }
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

function hexArg(flag: string, v: string): Buffer {
  const h = v.replace(/^0x/i, '');
  if (!/^([0-9a-fA-F]{2})*$/.test(h)) throw new UsageError(`${flag}: not an even-length hex string`);
  return Buffer.from(h, 'hex');
}

export function parseDuration(v: string, flag = '--max-age'): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)?$/.exec(v.trim());
  if (!m) throw new UsageError(`${flag}: cannot read duration '${v}' (e.g. 300s, 5m, 3h)`);
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] ?? 's'] ?? 1000;
  return Number(m[1]) * unit;
}

function parseAt(v: string): Date | 'timestamp' {
  if (v === 'timestamp' || v === 'document') return 'timestamp';
  if (v === 'now') return new Date();
  const d = /^\d+$/.test(v) ? new Date(Number(v)) : new Date(v);
  if (Number.isNaN(d.getTime())) throw new UsageError(`--at: cannot read time '${v}'`);
  return d;
}

function readPublicKey(path: string): Buffer {
  const data = readFileSync(path);
  try {
    const key = data.includes('-----BEGIN')
      ? createPublicKey(data.toString('utf8'))
      : createPublicKey({ key: data, format: 'der', type: 'spki' });
    return key.export({ type: 'spki', format: 'der' });
  } catch (err) {
    throw new UsageError(`--public-key: ${path} is not a PEM or DER public key (${(err as Error).message})`);
  }
}

/** parseArgs options of an attestation policy, shared by `verify` and `connect`/`proxy` (src/attested-tls/cli.ts). */
export const POLICY_OPTIONS = {
  root: { type: 'string' },
  pcr: { type: 'string', multiple: true },
  'user-data': { type: 'string' },
  'max-age': { type: 'string' },
  'reject-debug': { type: 'boolean' },
} as const;

/** The policy the POLICY_OPTIONS flags describe. */
export function policyFromFlags(values: {
  root?: string;
  pcr?: string[];
  'user-data'?: string;
  'max-age'?: string;
  'reject-debug'?: boolean;
}): VerifyOptions {
  const opts: VerifyOptions = {};
  if (values.root) opts.rootPem = readFileSync(values.root, 'utf8');
  if (values.pcr) {
    const pcrs = new Map<number, Uint8Array>();
    for (const p of values.pcr) {
      const m = /^(\d+)=(.*)$/.exec(p);
      if (!m || Number(m[1]) > 31) throw new UsageError(`--pcr: expected N=HEX with N in 0..31, got '${p}'`);
      pcrs.set(Number(m[1]), hexArg('--pcr', m[2] ?? ''));
    }
    opts.pcrs = pcrs;
  }
  if (values['user-data'] !== undefined) opts.userData = hexArg('--user-data', values['user-data']);
  if (values['max-age']) opts.maxAgeMs = parseDuration(values['max-age']);
  if (values['reject-debug']) opts.rejectDebug = true;
  return opts;
}

async function verifyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      ...POLICY_OPTIONS,
      at: { type: 'string' },
      nonce: { type: 'string' },
      'public-key': { type: 'string' },
    },
  });
  if (positionals.length !== 1) throw new UsageError('verify takes exactly one DOC');
  const opts = policyFromFlags(values);
  if (values.at) opts.at = parseAt(values.at);
  if (values.nonce !== undefined) opts.nonce = hexArg('--nonce', values.nonce);
  if (values['public-key']) opts.publicKey = readPublicKey(values['public-key']);
  const doc = parseDocumentInput(readInput(positionals[0]!));
  const verified = await verifyAttestation(doc, opts);
  process.stdout.write(`${JSON.stringify({ valid: true, ...documentToJson(verified) }, null, 2)}\n`);
  return 0;
}

async function describeCommand(argv: string[]): Promise<number> {
  const { positionals } = parseArgs({ args: argv, allowPositionals: true, options: {} });
  if (positionals.length !== 1) throw new UsageError('describe takes exactly one DOC');
  const doc = decodeDocument(parseDocumentInput(readInput(positionals[0]!)));
  process.stdout.write(`${JSON.stringify(documentToJson(doc), null, 2)}\n`);
  return 0;
}

async function rootCommand(argv: string[]): Promise<number> {
  const { values } = parseArgs({ args: argv, options: { 'state-dir': { type: 'string' } } });
  if (!values['state-dir']) throw new UsageError('root needs --state-dir DIR');
  const { loadOrCreateRoot } = await import('../nsm/software.ts');
  process.stdout.write((await loadOrCreateRoot(values['state-dir'])).pem);
  return 0;
}

export type Subcommand = (argv: string[]) => Promise<number>;

/**
 * `cloister attest SUB ...`; `extra` adds subcommands that live above this folder (connect, proxy), whose
 * usage errors print `extraUsage`.
 */
export async function run(
  argv: string[],
  extra: Record<string, Subcommand> = {},
  extraUsage = USAGE,
): Promise<number> {
  const [sub, ...rest] = argv;
  const commands: Record<string, Subcommand> = {
    verify: verifyCommand,
    describe: describeCommand,
    root: rootCommand,
    ...extra,
  };
  if (sub === undefined || sub === '-h' || sub === '--help' || sub === 'help') {
    process.stdout.write(USAGE);
    return sub === undefined ? 2 : 0;
  }
  const cmd = Object.hasOwn(commands, sub) ? commands[sub] : undefined;
  if (!cmd) {
    process.stderr.write(`cloister attest: unknown subcommand '${sub}'\n${USAGE}`);
    return 2;
  }
  try {
    return await cmd(rest);
  } catch (err) {
    if (err instanceof AttestationError) {
      process.stderr.write(`cloister attest: ${err.check}: ${err.message}\n`);
      return 1;
    }
    if (err instanceof AttestedTlsConnectError) {
      process.stderr.write(`cloister attest: connect: ${err.message}\n`);
      return 1;
    }
    if (err instanceof UsageError || (err as { code?: string }).code?.startsWith('ERR_PARSE_ARGS')) {
      const usage = Object.hasOwn(extra, sub) ? extraUsage : USAGE;
      process.stderr.write(`cloister attest ${sub}: ${(err as Error).message}\n${usage}`);
      return 2;
    }
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT' || e.code === 'EACCES' || e.code === 'EISDIR') {
      process.stderr.write(`cloister attest ${sub}: ${e.message}\n`);
      return 2;
    }
    throw err;
  }
}
