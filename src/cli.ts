// cloister's command line: one binary, several roles.
//   cloister enclave --config-dir DIR -- app...   inside the enclave (odyn-compatible)
//   cloister host -f enclaver.yaml ...            on the parent instance
//   cloister dev -f enclaver.yaml -- app...       both sides on one machine
//   cloister attest verify|describe ...           attestation documents
//   cloister attest connect|proxy ...             attested TLS: verify an enclave's certificate, forward to it
//   cloister kms-emulator ...                     a local KMS with attestation conditions
//   cloister kms policy ...                       print or lint a key policy bound to measurements
//   cloister secrets encrypt ...                  encrypt a boot-time secret, print its cloister.yaml entry
//   cloister version
import { VERSION } from './version.ts';

type Command = (argv: string[]) => Promise<number | undefined>;

// Each capability owns its subcommand in its own folder's cli.ts; lazy imports keep startup fast.
const commands: Record<string, () => Promise<Command>> = {
  enclave: async () => (await import('./supervisor/cli.ts')).run,
  host: async () => (await import('./host/cli.ts')).run,
  dev: async () => (await import('./dev/cli.ts')).run,
  attest: async () => (await import('./attested-tls/cli.ts')).run,
  'kms-emulator': async () => (await import('./kms-emulator/cli.ts')).run,
  kms: async () => (await import('./key-policy/cli.ts')).run,
  secrets: async () => {
    const { run } = await import('./secrets/cli.ts');
    // --dev opens `cloister dev`'s KMS emulator: dev/ sits above secrets/, so it is handed in from here.
    return (argv) => run(argv, async () => (await import('./dev/secrets.ts')).openDevKms);
  },
};

const USAGE = `usage: cloister <command> [options]

commands:
  enclave      run inside the enclave as the supervisor (odyn's command line)
  host         run on the parent instance: launch the enclave, relay egress, forward ingress
  dev          run both sides on this machine with emulated vsock, a software NSM and a KMS emulator
  attest       verify or describe attestation documents; connect to an enclave over attested TLS
  kms-emulator run a local KMS that enforces attestation conditions
  kms policy   print a key policy that releases plaintexts only to the measured enclave; --lint one
  secrets encrypt  encrypt a boot-time secret under a KMS key and print its cloister.yaml entry
  version      print the version
`;

export async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (cmd === undefined || cmd === '-h' || cmd === '--help' || cmd === 'help') {
    process.stdout.write(USAGE);
    return cmd === undefined ? 2 : 0;
  }
  if (cmd === 'version' || cmd === '--version' || cmd === '-V') {
    process.stdout.write(`cloister ${VERSION}\n`);
    return 0;
  }
  const load = Object.hasOwn(commands, cmd) ? commands[cmd] : undefined;
  if (!load) {
    process.stderr.write(`cloister: unknown command '${cmd}'\n${USAGE}`);
    return 2;
  }
  const run = await load();
  return (await run(rest)) ?? 0;
}

main(process.argv.slice(2)).then(
  (code) => {
    if (code !== 0) process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`cloister: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
