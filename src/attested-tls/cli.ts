// `cloister attest connect|proxy`: attested TLS for people and unmodified clients. The rest of
// `cloister attest` (verify, describe, root) is src/attestation/cli.ts, which runs these two as well so
// both share one usage text, one exit-code convention (0 verified, 1 a failed check, 2 usage) and one
// set of policy flags.
import { parseArgs } from 'node:util';
import { run as attestRun, POLICY_OPTIONS, parseDuration, policyFromFlags } from '../attestation/cli.ts';
import { UsageError } from '../cli-args.ts';
import { AttestationError } from '../errors.ts';
import { connectAttested } from './client.ts';
import { startAttestProxy } from './proxy.ts';

export const CONNECT_USAGE = `usage:
  cloister attest connect HOST:PORT [policy options] [--fresh] [--servername NAME] [--timeout DUR]
  cloister attest proxy --listen HOST:PORT --to HOST:PORT [policy options] [--fresh] [--timeout DUR]

connect: open TLS to HOST:PORT, verify the attestation document in the server's certificate and print the
verified identity as JSON (exit 0), or the failed check (exit 1): certificate, signature, chain, pcr, nonce,
age, debug, binding, connect.
proxy: accept plain TCP on --listen (keep it on loopback) and forward each connection over TLS to --to, only
after the enclave passed the same checks; a connection to an enclave that fails them is closed unsent.

policy options:
  --pcr N=HEX          expected PCR value (repeatable)
  --root FILE          trusted root certificate(s), PEM (default: AWS Nitro Enclaves Root G1)
  --max-age DUR        reject a document older than DUR (e.g. 10m)
  --reject-debug       reject debug-mode enclaves (PCR0 all zeros)
  --user-data HEX      expected user_data
  --fresh              ask for a document made for this connection (a random nonce in the TLS server name)
  --servername NAME    TLS server name to send (without --fresh)
  --timeout DUR        connect + handshake + verification time limit (default 10s)
`;

const OPTIONS = {
  ...POLICY_OPTIONS,
  fresh: { type: 'boolean' },
  servername: { type: 'string' },
  timeout: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const;

/** `HOST:PORT` or `[v6]:PORT`; port 0 only where `minPort` allows it (--listen: any free port). */
export function parseHostPort(v: string, flag: string, minPort = 1): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(v);
  const port = Number(m?.[3]);
  if (!m || port < minPort || port > 65535) throw new UsageError(`${flag}: expected HOST:PORT, got '${v}'`);
  return { host: (m[1] ?? m[2])!, port };
}

async function connectCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({ args: argv, allowPositionals: true, options: OPTIONS });
  if (values.help) {
    process.stdout.write(CONNECT_USAGE);
    return 0;
  }
  if (positionals.length !== 1) throw new UsageError('connect takes exactly one HOST:PORT');
  const to = parseHostPort(positionals[0]!, 'connect');
  const { socket, identity } = await connectAttested({
    ...policyFromFlags(values),
    ...to,
    fresh: values.fresh,
    servername: values.servername,
    timeoutMs: values.timeout ? parseDuration(values.timeout, '--timeout') : undefined,
  });
  socket.destroy();
  process.stdout.write(`${JSON.stringify({ verified: true, peer: positionals[0], ...identity }, null, 2)}\n`);
  return 0;
}

async function proxyCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: { ...OPTIONS, listen: { type: 'string' }, to: { type: 'string' } },
  });
  if (values.help) {
    process.stdout.write(CONNECT_USAGE);
    return 0;
  }
  if (positionals.length > 0)
    throw new UsageError(`proxy takes no positional argument, got '${positionals[0]}'`);
  if (!values.listen || !values.to) throw new UsageError('proxy needs --listen HOST:PORT and --to HOST:PORT');
  const listen = parseHostPort(values.listen, '--listen', 0);
  const to = parseHostPort(values.to, '--to');
  const proxy = await startAttestProxy({
    listen,
    to,
    policy: policyFromFlags(values),
    fresh: values.fresh,
    timeoutMs: values.timeout ? parseDuration(values.timeout, '--timeout') : undefined,
    onConnection(outcome) {
      if ('identity' in outcome) {
        const a = outcome.identity.attestation;
        process.stderr.write(
          `cloister attest proxy: forwarding to ${a.module_id} (PCR0 ${a.pcrs['0']?.slice(0, 16) ?? '-'}..., document ${Math.round(outcome.identity.age_ms / 1000)} s old)\n`,
        );
      } else {
        const e = outcome.error;
        const check = e instanceof AttestationError ? e.check : 'connect';
        process.stderr.write(`cloister attest proxy: refused: ${check}: ${e.message}\n`);
      }
    },
  });
  process.stderr.write(
    `cloister attest proxy: listening on ${proxy.address.host}:${proxy.address.port}, forwarding to ${to.host}:${to.port} after verification\n`,
  );
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await proxy.close();
  return 0;
}

/** `cloister attest ...`: verify/describe/root from src/attestation/, connect/proxy from here. */
export function run(argv: string[]): Promise<number> {
  return attestRun(argv, { connect: connectCommand, proxy: proxyCommand }, CONNECT_USAGE);
}
