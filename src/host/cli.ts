// `cloister host`: the parent-instance side (enclaver-run's job, docs/reference/enclaver.md, "Host side"):
// relay egress, launch the enclave with nitro-cli, forward ingress, print the enclave's logs, exit with the
// app's code.
import { type ChildProcess, spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { intFlag, oneOf, UsageError } from '../cli-args.ts';
import { loadConfig } from '../config/load.ts';
import { exitWhenClosed } from '../exit.ts';
import type { HostPortMapping } from '../ingress/host.ts';
import { createLogger } from '../log/logger.ts';
import { createTransport } from '../transport/index.ts';
import { CID_HOST } from '../transport/types.ts';
import { ingressPorts, parseHostSideArgs } from './args.ts';
import { runEnclave, terminateEnclave } from './nitro-cli.ts';
import { runHostSession } from './session.ts';

export const HOST_USAGE = `usage: cloister host [-f enclaver.yaml] [options]

  -f, --file FILE         the manifest (default /enclave/enclaver.yaml, as enclaver-run)
  --settings FILE         cloister.yaml (default: beside the manifest, if present)
  --eif FILE              the enclave image (default /enclave/application.eif)
  --cpu-count N           vCPUs (default: manifest defaults.cpu_count, else 2)
  --memory MB             memory in MiB (default: manifest defaults.memory_mb, else 4096)
  --debug-mode            start the enclave in debug mode (PCRs read as zero)
  --attach-cid N          attach to an enclave already running at CID N instead of launching one
                          (nitro-cli is not used; on exit or interrupt the enclave is left running)
  --nitro-cli PATH        the nitro-cli command (default: nitro-cli)
  -p, --publish H:E       serve enclave ingress port E on host port H (default: the same port)
  --listen-address ADDR   address of the ingress listeners (default 0.0.0.0)
  --proxy-protocol        prepend a PROXY v2 header with the client address (the enclave must expect it:
                          ingress.proxy_protocol: true in its cloister.yaml)
  --metrics-port N        expose the enclave's /healthz and /metrics (api.metrics_port) on host port N
  --status-timeout S      seconds to wait for the enclave's status port (default 60)
  --transport KIND        vsock (default) | emulated (tests, dev) | hybrid (a VM's vsock as a Unix socket)
  --vsock-dir DIR         emulated transport: directory of <cid>/<port>.sock
  --uds-path PATH         hybrid transport: the VMM's vsock socket (Firecracker, Cloud Hypervisor,
                          vhost-device-vsock); needs --attach-cid
  -v, --verbose           more of cloister's own log output

exit status: the app's exit code; 107 if a signal killed it; 108 if the enclave failed or was lost;
109 if cloister host was interrupted (SIGINT/SIGTERM; the enclave is terminated first).
`;

export async function run(argv: string[]): Promise<number> {
  let values: ReturnType<typeof parse>['values'];
  try {
    values = parse(argv).values;
    if (values.help) {
      process.stdout.write(HOST_USAGE);
      return 0;
    }
    const transport = oneOf(values.transport, '--transport', ['vsock', 'emulated', 'hybrid']);
    if (transport === 'emulated' && !values['vsock-dir']) {
      throw new UsageError('--transport emulated needs --vsock-dir');
    }
    if (transport === 'hybrid' && (!values['uds-path'] || values['attach-cid'] === undefined)) {
      throw new UsageError(
        '--transport hybrid needs --uds-path and --attach-cid (the VM is already running)',
      );
    }
    if (values['attach-cid'] !== undefined) {
      const launchOnly = ['eif', 'cpu-count', 'memory', 'debug-mode', 'nitro-cli'] as const;
      const clash = launchOnly.find((k) => values[k] !== undefined);
      if (clash) throw new UsageError(`--attach-cid launches nothing: --${clash} does not apply`);
    }
  } catch (err) {
    process.stderr.write(`cloister host: ${(err as Error).message}\n${HOST_USAGE}`);
    return 2;
  }
  const verbosity = values.verbose?.length ?? 0;
  const logger = createLogger({
    name: 'cloister-host',
    level: verbosity >= 2 ? 'trace' : verbosity === 1 ? 'debug' : (process.env.CLOISTER_LOG_LEVEL ?? 'info'),
  });
  let cpuCount: number;
  let memoryMb: number;
  let ports: HostPortMapping[];
  let metricsHostPort: number | undefined;
  let statusTimeoutS: number;
  let attachCid: number | undefined;
  const manifestPath = resolve(values.file ?? '/enclave/enclaver.yaml');
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig({ manifestPath, settingsPath: values.settings });
    cpuCount = intFlag(values['cpu-count'], '--cpu-count', 1) ?? config.manifest.defaults?.cpu_count ?? 2;
    memoryMb = intFlag(values.memory, '--memory', 64) ?? config.manifest.defaults?.memory_mb ?? 4096;
    ports = ingressPorts(config, values.publish ?? []);
    metricsHostPort = intFlag(values['metrics-port'], '--metrics-port', 0);
    statusTimeoutS = intFlag(values['status-timeout'], '--status-timeout', 1) ?? 60;
    attachCid = intFlag(values['attach-cid'], '--attach-cid', 1, 0xfffffffe);
  } catch (err) {
    process.stderr.write(`cloister host: ${(err as Error).message}\n`);
    return 2;
  }
  if (metricsHostPort !== undefined && config.settings.api.metrics_port === null) {
    process.stderr.write('cloister host: --metrics-port needs api.metrics_port in cloister.yaml\n');
    return 2;
  }
  const transport = await createTransport({
    kind: values.transport === 'emulated' || values.transport === 'hybrid' ? values.transport : 'vsock',
    dir: values['vsock-dir'],
    udsPath: values['uds-path'],
    cid: CID_HOST,
  });
  const nitroCli = values['nitro-cli'] ?? 'nitro-cli';
  const eifPath = resolve(values.eif ?? '/enclave/application.eif');

  const code = await runHostSession({
    config,
    transport,
    logger,
    out: process.stdout,
    statusTimeoutMs: statusTimeoutS * 1000,
    ingress: {
      listenAddress: values['listen-address'] ?? '0.0.0.0',
      proxyProtocol: values['proxy-protocol'] === true,
      ports,
    },
    metricsHostPort,
    launch: async () => {
      if (attachCid !== undefined) {
        // Someone else started it (and will stop it): a host side that restarts leaves the enclave be.
        return {
          cid: attachCid,
          description: `enclave at CID ${attachCid} (attached)`,
          terminate: async () => {},
        };
      }
      const debugMode = values['debug-mode'] === true;
      const info = await runEnclave({ nitroCli, eifPath, cpuCount, memoryMb, debugMode });
      // Debug mode: the enclave's serial console too (kernel and init messages), as enclaver-run does.
      const serial = debugMode ? followConsole(nitroCli, info.EnclaveID) : null;
      return {
        cid: info.EnclaveCID,
        description: `enclave ID=${info.EnclaveID}, CID=${info.EnclaveCID}`,
        terminate: async () => {
          await terminateEnclave(nitroCli, info.EnclaveID);
          serial?.kill();
        },
      };
    },
  });
  // Every listener, stream and child is closed by now: the process ends on its own.
  exitWhenClosed('host', code);
  return code;
}

/** `nitro-cli console --enclave-id ID`, each line to stderr as `[console] ...` (no length limit). */
function followConsole(nitroCli: string, id: string): ChildProcess {
  const child = spawn(nitroCli, ['console', '--enclave-id', id], { stdio: ['ignore', 'pipe', 'pipe'] });
  const rl = createInterface({ input: child.stdout! });
  rl.on('line', (line) => process.stderr.write(`[console] ${line}\n`));
  child.stderr!.resume();
  child.on('error', (err) => process.stderr.write(`cloister host: nitro-cli console: ${err.message}\n`));
  return child;
}

function parse(args: string[]) {
  return parseHostSideArgs(args, {
    eif: { type: 'string' },
    'cpu-count': { type: 'string' },
    memory: { type: 'string' },
    'debug-mode': { type: 'boolean' },
    'nitro-cli': { type: 'string' },
    'proxy-protocol': { type: 'boolean' },
    'metrics-port': { type: 'string' },
    'status-timeout': { type: 'string' },
    'attach-cid': { type: 'string' },
    transport: { type: 'string' },
    'vsock-dir': { type: 'string' },
    'uds-path': { type: 'string' },
  });
}
