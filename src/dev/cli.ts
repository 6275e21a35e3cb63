// `cloister dev -f enclaver.yaml -- app...`: both sides of an enclave on this machine.
//
//   this process (host side)                       child: `cloister enclave` (in `unshare -n` with --isolate)
//   egress relay <- emulated vsock 17002 ---------- egress proxy 127.0.0.1:<proxy_port> <- app
//   ingress 127.0.0.1:<port> -> emulated vsock ---> ingress -> 127.0.0.1:<port> (app)
//   status/log readers <- 17000/17001 ------------- supervisor (software NSM under <state>/nsm)
//   KMS emulator 127.0.0.1:<random> <- relay <----- KMS proxy 127.0.0.1:<kms port> <- app's AWS SDK
//
// It exits with the app's exit code once the app is done (same codes as `cloister host`), so
// `cloister dev -f m.yaml -- ./check.sh` works in scripts. Ctrl-C stops everything; nothing is left running.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { oneOf, splitAppArgv, UsageError } from '../cli-args.ts';
import { egressEnabled } from '../config/egress.ts';
import { loadConfig } from '../config/load.ts';
import type { Config } from '../config/types.ts';
import { DEFAULT_EGRESS_PROXY_PORT } from '../constants.ts';
import { exitWhenClosed } from '../exit.ts';
import { ingressPorts, parseHostSideArgs } from '../host/args.ts';
import { type LaunchedEnclave, runHostSession, type SessionReadyInfo, Teardown } from '../host/session.ts';
import type { HostPortMapping } from '../ingress/host.ts';
import { startKmsEmulator } from '../kms-emulator/server.ts';
import { createLogger } from '../log/logger.ts';
import { loadOrCreateRoot } from '../nsm/software.ts';
import { attestedPorts } from '../plan/attested-tls.ts';
import { terminate } from '../terminate.ts';
import { EmulatedTransport } from '../transport/emulated.ts';
import { CID_HOST, DEV_ENCLAVE_CID } from '../transport/types.ts';
import { deriveEnclaveConfig, devPcrs } from './derive.ts';
import { DEV_ACCOUNT, DEV_ROLE_SESSION, devKeyPolicy } from './identity.ts';

export const DEV_USAGE = `usage: cloister dev [-f enclaver.yaml] [options] -- app [args...]

  -f, --file FILE         the manifest (default ./enclaver.yaml)
  --settings FILE         cloister.yaml (default: beside the manifest, if present)
  --state-dir DIR         software NSM root, KMS emulator keys, scratch files (default ./.state)
  --kms emulator|aws      KMS behind the proxy: a local emulator (default) or real AWS KMS
  --region R              region the emulator serves (default $AWS_REGION or us-east-1)
  --isolate               run the enclave side in its own network namespace with only lo (default as root)
  --no-isolate            run it in this machine's network namespace
  -p, --publish H:E       serve enclave ingress port E on local port H (default: the same port)
  --listen-address ADDR   address of the ingress listeners (default 127.0.0.1)
  -v, --verbose           show cloister's own logs (-v info, -vv debug; default: warnings)
  -q, --quiet             only errors from cloister itself

exit status: the app's exit code; 107 if a signal killed it; 108 if the enclave side failed;
109 if interrupted (Ctrl-C).
`;

/** The key-policy line of the banner: a policy `cloister kms policy --lint` accepts, bound to PCR0. */
function policyLine(pcrs: Record<string, string>): string | null {
  const pcr0 = pcrs['0'];
  if (!pcr0) return null;
  try {
    return JSON.stringify(devKeyPolicy(pcr0));
  } catch (err) {
    // nsm.pcrs in cloister.yaml set PCR0 to something no policy should pin (all zeros...).
    return `none: ${(err as Error).message}`;
  }
}

function canUnshare(): boolean {
  return spawnSync('unshare', ['-n', 'true'], { stdio: 'ignore' }).status === 0;
}

function banner(
  config: Config,
  info: SessionReadyInfo,
  extra: {
    isolate: boolean;
    nsmRoot: string;
    pcrs: Record<string, string>;
    kms: string | null;
    realKms: boolean;
    notes: string[];
  },
): string {
  const m = config.manifest;
  const lines = [
    `cloister dev: "${m.name}" runs in an emulated enclave (CID ${info.cid}${extra.isolate ? ', own network namespace: no way out but the proxy' : ', not isolated'})`,
  ];
  const attested = attestedPorts(config);
  for (const [p, a] of info.ingress) {
    const scheme = attested.has(p) ? 'https' : 'http';
    lines.push(
      `  ingress     ${scheme}://${a.address}:${a.port} -> enclave port ${p}${attested.has(p) ? ' (attested TLS)' : ''}`,
    );
  }
  if (egressEnabled(m)) {
    lines.push(
      `  egress      proxy http://127.0.0.1:${m.egress?.proxy_port ?? DEFAULT_EGRESS_PROXY_PORT}/ in the enclave; allow ${JSON.stringify(m.egress?.allow)}${m.egress?.deny ? ` deny ${JSON.stringify(m.egress.deny)}` : ''}`,
    );
  }
  if (m.kms_proxy) {
    lines.push(
      `  KMS         app -> http://127.0.0.1:${m.kms_proxy.listen_port} (proxy) -> ${extra.kms ?? 'AWS KMS'}`,
    );
  }
  if (m.api)
    lines.push(`  attestation http://127.0.0.1:${m.api.listen_port}/v1/attestation (in the enclave)`);
  if (info.metrics) lines.push(`  metrics     http://${info.metrics.address}:${info.metrics.port}/metrics`);
  lines.push(`  NSM root    ${extra.nsmRoot} (software NSM; trust it instead of AWS's root)`);
  for (const [i, v] of Object.entries(extra.pcrs)) lines.push(`  PCR${i}        ${v}`);
  const policy = policyLine(extra.pcrs);
  if (policy) lines.push(`  key policy  ${policy}`);
  if (policy && extra.realKms) {
    lines.push(
      `  note        for AWS KMS, name your instance role and administrator: cloister kms policy --role ARN --admin ARN --pcr 0=${extra.pcrs['0']}`,
    );
  }
  // How a client checks the attested ports (docs/attested-tls.md): this run's root and PCR0.
  for (const [p, a] of info.ingress) {
    if (!attested.has(p)) continue;
    const pcr0 = extra.pcrs['0'] ? ` --pcr 0=${extra.pcrs['0']}` : '';
    lines.push(`  verify      cloister attest connect ${a.address}:${a.port} --root ${extra.nsmRoot}${pcr0}`);
  }
  for (const n of extra.notes) lines.push(`  note        ${n}`);
  return `${lines.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const code = await runDev(argv);
  // Everything was stopped by now (enclave side, emulator, relay, listeners): the process ends on its own.
  exitWhenClosed('dev', code);
  return code;
}

async function runDev(argv: string[]): Promise<number> {
  const { own, app } = splitAppArgv(argv);
  let values: ReturnType<typeof parse>['values'];
  try {
    values = parse(own).values;
    if (values.help) {
      process.stdout.write(DEV_USAGE);
      return 0;
    }
    if (app.length === 0) throw new UsageError('the app to run is required after `--`');
    oneOf(values.kms, '--kms', ['emulator', 'aws']);
    if (values.isolate && values['no-isolate'])
      throw new UsageError('give --isolate or --no-isolate, not both');
  } catch (err) {
    process.stderr.write(`cloister dev: ${(err as Error).message}\n${DEV_USAGE}`);
    return 2;
  }
  const verbosity = values.verbose?.length ?? 0;
  const level = verbosity >= 2 ? 'debug' : verbosity === 1 ? 'info' : values.quiet ? 'error' : 'warn';
  const logger = createLogger({ name: 'cloister-dev', level });
  let config: Config;
  let ports: HostPortMapping[];
  try {
    config = loadConfig({
      manifestPath: resolve(values.file ?? 'enclaver.yaml'),
      settingsPath: values.settings,
    });
    ports = ingressPorts(config, values.publish ?? []);
  } catch (err) {
    process.stderr.write(`cloister dev: ${(err as Error).message}\n`);
    return 2;
  }
  const isolate = values['no-isolate']
    ? false
    : values.isolate
      ? true
      : process.getuid?.() === 0 && canUnshare();
  if (isolate && !canUnshare()) {
    process.stderr.write('cloister dev: --isolate needs `unshare -n` (root, or user namespaces)\n');
    return 2;
  }

  const stateDir = resolve(values['state-dir'] ?? '.state');
  mkdirSync(stateDir, { recursive: true });
  // One scratch dir per run (vsock sockets, derived config, the enclave side's console), removed at exit.
  const runDir = mkdtempSync(join(stateDir, 'run-'));
  const teardown = new Teardown();
  teardown.add(() => rmSync(runDir, { recursive: true, force: true }));
  try {
    const nsmState = join(stateDir, 'nsm');
    await loadOrCreateRoot(nsmState);
    const nsmRoot = join(nsmState, 'root.pem');
    const pcrs = devPcrs(config, app);
    const region = values.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';

    // The enclave side's own AWS credentials (what IMDS would give it on EC2). With the emulator they are
    // made up for this run; with --kms aws they are whatever this shell has.
    const enclaveEnv: NodeJS.ProcessEnv = {
      ...process.env,
      CLOISTER_DEV: '1',
      CLOISTER_DEV_NSM_ROOT: nsmRoot,
    };
    let kmsUrl: string | null = null;
    // The emulator serves the KMS proxy and the boot-time secrets.
    const needsKms = !!config.manifest.kms_proxy || config.settings.secrets.length > 0;
    if (needsKms && values.kms !== 'aws') {
      const creds = {
        accessKeyId: `AKIDDEV${randomBytes(6).toString('hex').toUpperCase()}`,
        secretAccessKey: randomBytes(24).toString('base64url'),
      };
      const emu = await startKmsEmulator({
        stateDir: join(stateDir, 'kms'),
        host: '127.0.0.1',
        port: 0,
        attestationRootPem: readFileSync(nsmRoot, 'utf8'),
        credentials: [{ ...creds, principal: DEV_ROLE_SESSION }],
        region,
        accountId: DEV_ACCOUNT,
        logger: createLogger({ name: 'kms-emulator', level }),
      });
      teardown.add(() => emu.close());
      kmsUrl = emu.url;
      Object.assign(enclaveEnv, {
        AWS_ACCESS_KEY_ID: creds.accessKeyId,
        AWS_SECRET_ACCESS_KEY: creds.secretAccessKey,
        AWS_EC2_METADATA_DISABLED: 'true',
        AWS_REGION: region,
        CLOISTER_DEV_KMS_URL: emu.url,
      });
      delete enclaveEnv.AWS_SESSION_TOKEN;
    }

    const vsockDir = join(runDir, 'vsock');
    const derived = deriveEnclaveConfig({
      config,
      dir: join(runDir, 'config'),
      vsockDir,
      enclaveCid: DEV_ENCLAVE_CID,
      nsmState,
      pcrs,
      kms: kmsUrl ? { url: kmsUrl, region } : null,
      logLevel: level,
    });

    const self = process.argv[1]!;
    const launch = async (): Promise<LaunchedEnclave> => {
      const enclaveArgs = [self, 'enclave', '--config-dir', derived.configDir];
      // Isolated, the supervisor's own bootstrap brings up lo, as in a real enclave.
      if (!isolate) enclaveArgs.push('--no-bootstrap');
      enclaveArgs.push('--', ...app);
      const cmd = isolate ? 'unshare' : process.execPath;
      const args = isolate ? ['-n', process.execPath, ...enclaveArgs] : enclaveArgs;
      // The supervisor echoes the log stream on its stdout too: keep that in a file (we print the stream
      // once, from vsock 17001) and show its tail only if the enclave side dies.
      const consolePath = join(runDir, 'enclave-console.log');
      const consoleFd = openSync(consolePath, 'w');
      const child: ChildProcess = spawn(cmd, args, {
        stdio: ['ignore', consoleFd, consoleFd],
        env: enclaveEnv,
        // Its own process group: the terminal's Ctrl-C reaches us, and we stop it in order.
        detached: true,
      });
      const exited = new Promise<string>((r) =>
        child.once('exit', (code, sig) => r(`the enclave side exited (${sig ?? code})`)),
      );
      await new Promise<void>((res, rej) => {
        child.once('spawn', () => res());
        child.once('error', rej);
      });
      const grace = config.settings.app.stop_grace_ms + 2000;
      return {
        cid: DEV_ENCLAVE_CID,
        description: `enclave side pid ${child.pid}`,
        gone: exited.then((why) => {
          const tail = readFileSync(consolePath, 'utf8').slice(-2000);
          return tail ? `${why}; its last output:\n${tail}` : why;
        }),
        terminate: async () => {
          if (child.exitCode !== null || child.signalCode !== null) return;
          const killGroup = () => {
            try {
              process.kill(-child.pid!, 'SIGKILL');
            } catch {}
          };
          // SIGTERM to the supervisor alone (it stops the app in order); SIGKILL to the whole group.
          await terminate(
            { signal: (sig) => (sig === 'SIGKILL' ? killGroup() : child.kill(sig)), exited },
            { graceMs: grace },
          );
          // Anything the app left in the group goes too.
          killGroup();
        },
      };
    };

    const code = await runHostSession({
      config,
      transport: new EmulatedTransport(vsockDir, CID_HOST),
      logger,
      out: process.stdout,
      statusTimeoutMs: 30_000,
      ingress: {
        listenAddress: values['listen-address'] ?? '127.0.0.1',
        proxyProtocol: config.settings.ingress.proxy_protocol,
        ports,
      },
      launch,
      onReady: (info) =>
        process.stderr.write(
          banner(config, info, {
            isolate,
            nsmRoot,
            pcrs,
            kms: kmsUrl,
            realKms: !!config.manifest.kms_proxy && values.kms === 'aws',
            notes: derived.notes,
          }),
        ),
    });
    return code;
  } catch (err) {
    process.stderr.write(`cloister dev: ${(err as Error).message}\n`);
    return 1;
  } finally {
    await teardown.run();
  }
}

function parse(args: string[]) {
  return parseHostSideArgs(args, {
    'state-dir': { type: 'string' },
    kms: { type: 'string' },
    region: { type: 'string' },
    isolate: { type: 'boolean' },
    'no-isolate': { type: 'boolean' },
    quiet: { type: 'boolean', short: 'q' },
  });
}
