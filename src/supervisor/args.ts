// `cloister enclave` command line: odyn's (`--config-dir DIR [-v…] [--no-bootstrap] [--no-console] --
// entrypoint…`, docs/reference/enclaver.md, "Command line") plus cloister's own overrides of cloister.yaml
// settings.
import { parseArgs } from 'node:util';
import { intFlag, oneOf, splitAppArgv, UsageError } from '../cli-args.ts';

export { UsageError };

export const ENCLAVE_USAGE = `usage: cloister enclave (--config-dir DIR | -f FILE) [options] -- app [args...]

  --config-dir DIR      directory holding enclaver.yaml (and cloister.yaml, tls/)
  -f, --file FILE       the manifest file itself (its directory is the config dir)
  --settings FILE       cloister.yaml to use (default: <config dir>/cloister.yaml if it exists)
  --no-bootstrap        do not bring up lo or seed entropy (not in a real enclave)
  --no-console          app output goes straight to cloister's stdout/stderr; no log port 17001
  -v, --verbose         more log output (-v debug, -vv trace)
  --transport KIND      vsock (default) | emulated
  --vsock-dir DIR       emulated transport: directory of <cid>/<port>.sock
  --cid N               emulated transport: this enclave's CID (default 16)
  --parent-cid N        the CID dialled for egress (default 2, the parent instance)
  --nsm KIND            device (default, /dev/nsm) | software
  --nsm-state DIR       software NSM: where its CA chain and keys live
`;

export interface EnclaveArgs {
  configDir?: string;
  manifestFile?: string;
  settingsFile?: string;
  bootstrap: boolean;
  console: boolean;
  verbosity: number;
  transport?: 'vsock' | 'emulated';
  vsockDir?: string;
  cid?: number;
  parentCid?: number;
  nsm?: 'device' | 'software';
  nsmState?: string;
  help: boolean;
  /** The app's command line, exactly as given after `--`. */
  app: string[];
}

export function parseEnclaveArgs(argv: string[]): EnclaveArgs {
  // Everything after the first `--` is the app's, untouched (it may contain its own flags and `--`).
  const { own, app } = splitAppArgv(argv);
  let values: ReturnType<typeof parse>['values'];
  let positionals: string[];
  try {
    ({ values, positionals } = parse(own));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const help = values.help === true;
  if (positionals.length > 0) {
    throw new UsageError(`unexpected argument '${positionals[0]}': the app's command line goes after \`--\``);
  }
  const transport = oneOf(values.transport, '--transport', ['vsock', 'emulated']);
  const nsm = oneOf(values.nsm, '--nsm', ['device', 'software']);
  const cid = intFlag(values.cid, '--cid', 3, 0xfffffffe);
  const parentCid = intFlag(values['parent-cid'], '--parent-cid', 1, 0xfffffffe);
  if (!help) {
    if (values['config-dir'] === undefined && values.file === undefined) {
      throw new UsageError('--config-dir DIR (or -f FILE) is required');
    }
    if (values['config-dir'] !== undefined && values.file !== undefined) {
      throw new UsageError('give either --config-dir or -f, not both');
    }
    if (app.length === 0 || app[0] === '') throw new UsageError('the app to run is required after `--`');
  }
  return {
    configDir: values['config-dir'],
    manifestFile: values.file,
    settingsFile: values.settings,
    bootstrap: values['no-bootstrap'] !== true,
    console: values['no-console'] !== true,
    verbosity: values.verbose?.length ?? 0,
    transport,
    vsockDir: values['vsock-dir'],
    cid,
    parentCid,
    nsm,
    nsmState: values['nsm-state'],
    help,
    app,
  };
}

function parse(args: string[]) {
  return parseArgs({
    args,
    allowPositionals: true,
    strict: true,
    options: {
      'config-dir': { type: 'string' },
      file: { type: 'string', short: 'f' },
      settings: { type: 'string' },
      'no-bootstrap': { type: 'boolean' },
      'no-console': { type: 'boolean' },
      verbose: { type: 'boolean', short: 'v', multiple: true },
      transport: { type: 'string' },
      'vsock-dir': { type: 'string' },
      cid: { type: 'string' },
      'parent-cid': { type: 'string' },
      nsm: { type: 'string' },
      'nsm-state': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
}
