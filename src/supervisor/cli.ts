// `cloister enclave`: the supervisor inside the enclave (odyn's command line; see args.ts).
import { exitWhenClosed } from '../exit.ts';
import { ENCLAVE_USAGE, parseEnclaveArgs, UsageError } from './args.ts';
import { Supervisor } from './supervisor.ts';

export async function run(argv: string[]): Promise<number> {
  let args: ReturnType<typeof parseEnclaveArgs>;
  try {
    args = parseEnclaveArgs(argv);
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    process.stderr.write(`cloister enclave: ${err.message}\n${ENCLAVE_USAGE}`);
    return 2;
  }
  if (args.help) {
    process.stdout.write(ENCLAVE_USAGE);
    return 0;
  }
  const code = await new Supervisor(args).run();
  // Every service, server and timer is closed by now: the process ends on its own.
  exitWhenClosed('enclave', code);
  return code;
}
