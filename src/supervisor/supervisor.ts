// `cloister enclave`: the in-enclave supervisor. Order as odyn's
// (docs/reference/enclaver.md, "Startup order"):
//   1. status server (vsock 17000) and log server (17001), so a failed start can still be reported;
//   2. bootstrap (lo up, entropy from the NSM) unless --no-bootstrap;
//   3. services: egress proxy, ingress, KMS proxy (if kms_proxy), attestation API (if api);
//   4. the app, with the services' environment variables added to cloister's own.
// The config is read before step 1 only because it names the transport and the log ring's size; a bad
// config is still reported through the status port like any other start failure.
//
// Lifetime (odyn never exits; the host reads the final status and terminates the enclave):
//   - the app ends for good (no restart): services close, cloister stays up serving status and logs;
//   - a start failure: status `fatal`, cloister stays up to be read;
//   - cloister gets SIGTERM/SIGINT: it stops the app (signal, grace period, SIGKILL), closes the services
//     and exits, with the app's exit code (128+signal if a signal ended it).
import type { Server } from 'node:net';
import type { AttestedTls } from '../attested-tls/issuer.ts';
import { findConfigFiles, loadConfig } from '../config/load.ts';
import { type Config, DEFAULT_SETTINGS, type Settings } from '../config/types.ts';
import { delayUnless, withDeadline } from '../deadline.ts';
import { createLogger, type Logger } from '../log/logger.ts';
import { LogRing } from '../log/ring.ts';
import { LogSink, openConsoleEcho } from '../log/sink.ts';
import { appRestarts, appState } from '../metrics.ts';
import type { Nsm } from '../nsm/types.ts';
import { buildPlan, type RuntimePlan, withSecretTlsKeys } from '../plan/index.ts';
import { type ErrorLog, keepServing } from '../server-errors.ts';
import type { Service } from '../service.ts';
import { LazyRamDir } from '../system/ram-dir.ts';
import { terminate } from '../terminate.ts';
import { APP_LOG_PORT, createTransport, STATUS_PORT, type Transport } from '../transport/index.ts';
import { type AppExit, type AppOutput, launchApp, type OutputSource, type RunningApp } from './app.ts';
import type { EnclaveArgs } from './args.ts';
import { loadBootSecrets } from './boot-secrets.ts';
import { bootstrap } from './bootstrap.ts';
import { lazyNsm } from './lazy-nsm.ts';
import { LineJoiner } from './line-joiner.ts';
import { LogServer } from './log-server.ts';
import { ReaderLimit } from './reader-limit.ts';
import { ourGroupMembers, Reaper } from './reaper.ts';
import { RestartTracker } from './restart.ts';
import { type AppStatus, StatusBoard } from './status.ts';

/** Signals passed on to the app's process group. SIGTERM and SIGINT also stop cloister. */
export const FORWARDED_SIGNALS: NodeJS.Signals[] = [
  'SIGTERM',
  'SIGINT',
  'SIGHUP',
  'SIGQUIT',
  'SIGUSR1',
  'SIGUSR2',
];
const MIN_RING_BYTES = 128 * 1024;
const STOP_SIGNALS = new Set<NodeJS.Signals>(['SIGTERM', 'SIGINT']);
/** How long past its grace period a service's close() may run before it is destroyed. */
const CLOSE_OVERRUN_MS = 1000;

class ServiceCloseTimeout extends Error {
  constructor() {
    super('the service did not close within the grace period');
  }
}

/** Command-line flags win over cloister.yaml. */
export function applyFlags(settings: Settings, args: EnclaveArgs): Settings {
  const s = structuredClone(settings);
  if (args.transport) s.transport.kind = args.transport;
  if (args.vsockDir !== undefined) s.transport.dir = args.vsockDir;
  if (args.cid !== undefined) s.transport.enclave_cid = args.cid;
  if (args.parentCid !== undefined) s.transport.parent_cid = args.parentCid;
  if (args.nsm) s.nsm.kind = args.nsm;
  if (args.nsmState !== undefined) s.nsm.state_dir = args.nsmState;
  if (args.verbosity >= 2) s.log.level = 'trace';
  else if (args.verbosity === 1 && s.log.level !== 'trace') s.log.level = 'debug';
  return s;
}

function loadWithFlags(args: EnclaveArgs): Config {
  const files = args.manifestFile ? { manifestPath: args.manifestFile } : findConfigFiles(args.configDir!);
  const config = loadConfig({
    manifestPath: files.manifestPath,
    settingsPath: args.settingsFile ?? files.settingsPath,
  });
  return { ...config, settings: applyFlags(config.settings, args) };
}

/** JSON.stringify replacer for the stderr fallback: an Error has no enumerable message of its own. */
function errorText(_key: string, value: unknown): unknown {
  return value instanceof Error ? value.message : value;
}

function exitCodeOf(exit: AppExit): number {
  return exit.code ?? 128 + (exit.signal ?? 0);
}

function finalStatus(exit: AppExit): AppStatus {
  if (exit.code !== null) return { status: 'exited', code: exit.code };
  return { status: 'signaled', signal: exit.signal ?? 0, signal_name: exit.signalName ?? 'unknown' };
}

function describeExit(exit: AppExit): string {
  return exit.code !== null ? `exited with ${exit.code}` : `terminated by ${exit.signalName}`;
}

export class Supervisor {
  private readonly board = new StatusBoard();
  private logServer: LogServer | null = null;
  private servers: Server[] = [];
  private sink: LogSink | null = null;
  private logger!: Logger;
  private services: Service[] = [];
  /** Files that must stay in RAM (boot secrets, attested TLS material); removed with the services. */
  private ramDir: LazyRamDir | null = null;
  private nsm: Nsm | null = null;
  private reaper: Reaper | null = null;
  private app: RunningApp | null = null;
  /** The last app's pid: its process group is swept with SIGKILL when cloister exits. */
  private lastPid: number | null = null;
  private appSettings: Settings['app'] = DEFAULT_SETTINGS.app;
  private lastExit: AppExit | null = null;
  private failed = false;
  private stopping = false;
  private resolveStop!: () => void;
  private readonly stopRequested = new Promise<void>((r) => {
    this.resolveStop = r;
  });

  constructor(private readonly args: EnclaveArgs) {}

  /** The logger once it exists; before that (the status/log servers come first) plain stderr. */
  private errorLog(): ErrorLog {
    return (
      this.logger ?? {
        error: (fields: object, msg: string) =>
          process.stderr.write(`cloister: ${msg} ${JSON.stringify(fields, errorText)}\n`),
      }
    );
  }

  /** Runs until cloister should exit; resolves with its exit code. */
  async run(): Promise<number> {
    let config: Config | undefined;
    let configError: Error | undefined;
    try {
      config = loadWithFlags(this.args);
    } catch (err) {
      configError = err as Error;
    }
    const settings = config?.settings ?? applyFlags(DEFAULT_SETTINGS, this.args);

    // 1. Status and log servers. If these fail nothing can be reported: exit 1, as odyn does.
    let transport: Transport;
    try {
      transport = await createTransport({
        kind: settings.transport.kind,
        dir: settings.transport.dir ?? undefined,
        cid: settings.transport.enclave_cid,
      });
      const status = await transport.listen(STATUS_PORT);
      this.servers.push(status);
      keepServing(status, () => this.errorLog(), 'status server', { port: STATUS_PORT });
      const warn = (fields: Record<string, unknown>, msg: string) =>
        this.logger
          ? this.logger.warn(fields, msg)
          : process.stderr.write(`cloister: ${msg} ${JSON.stringify(fields, errorText)}\n`);
      const max = settings.streams.max_readers;
      this.board.serve(status, new ReaderLimit(`status stream (vsock ${STATUS_PORT})`, max, warn));
      if (this.args.console) {
        // The ring is never smaller than a few chunks, so live readers keep up even when
        // log.buffer_bytes (the replay a new reader gets) is tiny or 0.
        const ring = new LogRing(Math.max(settings.log.buffer_bytes, MIN_RING_BYTES));
        this.logServer = new LogServer(ring, settings.log.buffer_bytes);
        const logs = await transport.listen(APP_LOG_PORT);
        this.servers.push(logs);
        keepServing(logs, () => this.errorLog(), 'log server', { port: APP_LOG_PORT });
        this.logServer.serve(logs, new ReaderLimit(`log stream (vsock ${APP_LOG_PORT})`, max, warn));
        this.sink = new LogSink(ring, openConsoleEcho(1));
      }
    } catch (err) {
      process.stderr.write(`cloister: cannot serve the status/log ports: ${(err as Error).message}\n`);
      for (const s of this.servers) s.close();
      return 1;
    }
    this.logger = createLogger({
      level: settings.log.level,
      name: 'cloister',
      destination: this.sink ?? undefined,
    });
    for (const sig of FORWARDED_SIGNALS) process.on(sig, () => this.onSignal(sig));
    // As PID 1, exiting would panic the enclave's kernel; a bug in one service must not take the app and
    // the status stream down with it. Log it loudly and keep supervising.
    process.on('uncaughtException', (err) =>
      this.logger.fatal({ err }, 'uncaught exception (cloister keeps running)'),
    );
    process.on('unhandledRejection', (err) =>
      this.logger.fatal({ err }, 'unhandled rejection (cloister keeps running)'),
    );
    this.board.onChange((s) => this.logger.debug({ appStatus: s }, 'status changed'));

    // Zombies are collected from here on, whatever else fails (as PID 1 every orphan is ours).
    await this.startReaper();

    if (configError || !config) return this.fail(`invalid configuration: ${configError?.message}`);
    this.appSettings = config.settings.app;
    this.logger.info(
      { manifest: config.manifestPath, transport: settings.transport.kind },
      'cloister starting',
    );

    // 2. Bootstrap.
    this.nsm = lazyNsm(settings.nsm);
    if (this.args.bootstrap) {
      try {
        const system = await import('../system/index.ts');
        await bootstrap(system, this.nsm, this.logger);
      } catch (err) {
        return this.fail((err as Error).message);
      }
    } else {
      this.logger.info('bootstrap skipped (--no-bootstrap)');
    }
    if (this.stopping) return this.shutdown();

    // 3. Services.
    let env: Record<string, string>;
    try {
      // Every decision the services share, made once; a bad TLS key fails here, before any starts.
      env = await this.startServices(buildPlan(config), transport, this.nsm);
    } catch (err) {
      await this.closeServices();
      return this.fail((err as Error).message);
    }
    if (this.stopping) return this.shutdown();

    // 4. The app, as long as the restart policy says so.
    await this.superviseApp(config.settings, { ...process.env, ...env } as NodeJS.ProcessEnv);
    await this.closeServices();
    if (!this.stopping) {
      this.logger.info(
        this.failed
          ? 'cloister stays up to report the failure'
          : 'the app has ended; cloister stays up to serve its status and logs',
      );
      await this.stopRequested;
    }
    return this.shutdown();
  }

  private async startReaper(): Promise<void> {
    try {
      const system = await import('../system/index.ts');
      if (process.pid !== 1) system.setChildSubreaper();
      this.reaper = new Reaper({
        reapZombie: system.reapZombie,
        onReaped: (pid, status) => this.logger.debug({ pid, status }, 'reaped an orphaned process'),
      });
      this.reaper.start();
    } catch (err) {
      this.logger.warn({ err }, 'orphaned processes will not be reaped');
    }
  }

  /**
   * Starts the services the plan asks for, in odyn's order, each with its slice of the plan and what it
   * needs from the others (src/service.ts). Returns the environment variables they give the app.
   */
  private async startServices(
    plan: RuntimePlan,
    transport: Transport,
    nsm: Nsm,
  ): Promise<Record<string, string>> {
    const logger = this.logger;
    // Where files that must stay in RAM go: mounted or created on first use, removed when services close.
    const ramDir = new LazyRamDir(plan.ramDir);
    this.ramDir = ramDir;
    // The KMS proxy goes out through the egress proxy: it gets the address the egress proxy bound.
    let egress: { host: string; port: number } | null = null;
    const starts: [string, () => Promise<Service>][] = [];
    if (plan.egress) {
      const slice = plan.egress;
      starts.push([
        'egress proxy',
        async () => {
          const svc = await (await import('../egress/proxy.ts')).startEgressProxy(slice, {
            transport,
            logger,
            ramDir: () => ramDir.get(),
          });
          egress = svc.address;
          return svc;
        },
      ]);
    }
    // Boot-time secrets: after egress (their way out), before ingress (a TLS key may be one) and the app.
    let ingressPlan = plan.ingress;
    const secrets = plan.secrets;
    if (secrets) {
      starts.push([
        'boot-time secrets',
        async () => {
          const ready = await loadBootSecrets({
            plan: secrets,
            deps: { nsm, egress, logger, ramDir },
            app: this.appSettings,
            logger,
            setStatus: (s) => this.board.set(s),
            stopRequested: this.stopRequested,
          });
          ingressPlan = withSecretTlsKeys(plan.ingress, ready.tlsKeys);
          for (const k of ready.tlsKeys.values()) k.fill(0);
          const done = async () => {};
          return { env: ready.env, close: done, destroy: done };
        },
      ]);
    }
    // Attested TLS before ingress (its ports serve the certificate) and before the app (it reads the files).
    let attestedTls: AttestedTls | undefined;
    const attestedPlan = plan.attestedTls;
    if (attestedPlan) {
      starts.push([
        'attested TLS',
        async () => {
          const a = await (await import('../attested-tls/issuer.ts')).startAttestedTls(attestedPlan, {
            nsm,
            logger,
            ramDir: () => ramDir.get(),
            signalApp: (signal) => this.signalApp(signal),
          });
          attestedTls = a;
          return a;
        },
      ]);
    }
    starts.push([
      'ingress',
      async () =>
        (await import('../ingress/enclave.ts')).startIngress(ingressPlan, {
          transport,
          logger,
          attestedTls,
        }),
    ]);
    if (plan.kms) {
      const slice = plan.kms;
      starts.push([
        'KMS proxy',
        async () => (await import('../kms/proxy.ts')).startKmsProxy(slice, { logger, nsm, egress }),
      ]);
    }
    if (plan.api) {
      const slice = plan.api;
      starts.push([
        'attestation API',
        async () => (await import('../api/server.ts')).startApiServer(slice, { logger, nsm }),
      ]);
    }
    if (plan.metrics) {
      const slice = plan.metrics;
      starts.push([
        'health and metrics server',
        async () => (await import('../api/metrics-server.ts')).startMetricsServer(slice, { logger }),
      ]);
    }
    const env: Record<string, string> = {};
    for (const [name, start] of starts) {
      let service: Service;
      try {
        service = await start();
      } catch (err) {
        throw new Error(`cannot start the ${name}: ${(err as Error).message}`);
      }
      this.services.push(service);
      Object.assign(env, service.env ?? {});
      // Names only: values may one day carry something private.
      if (service.env && Object.keys(service.env).length > 0) {
        this.logger.debug(
          { service: name, env: Object.keys(service.env) },
          'service environment for the app',
        );
      }
    }
    // The app finds the files cloister wrote for it (boot-time secrets, attested TLS) here: in dev mode
    // the directory is a fresh one under /dev/shm.
    const ramPath = ramDir.opened
      ? await ramDir.get().then(
          (d) => d.path,
          () => null,
        )
      : null;
    if (ramPath) env.CLOISTER_RAM_DIR = ramPath;
    return env;
  }

  private async closeServices(): Promise<void> {
    // Reverse order, as odyn (API, KMS, ingress — which waits for in-flight connections — then egress).
    const services = this.services.reverse();
    this.services = [];
    // Each close() has its own grace (ingress: the app's stop_grace_ms). A close that overruns it anyway
    // (a bug) must not keep cloister up for ever: it is destroyed.
    const grace = this.appSettings.stop_grace_ms;
    for (const s of services) {
      try {
        await withDeadline(s.close(), grace + CLOSE_OVERRUN_MS, () => new ServiceCloseTimeout());
      } catch (err) {
        if (err instanceof ServiceCloseTimeout) {
          this.logger.warn(
            { graceMs: grace },
            'a service did not close within the grace period; destroying it',
          );
          await s.destroy(err).catch(() => {});
        } else this.logger.warn({ err }, 'a service failed to close cleanly');
      }
    }
    await this.nsm?.close().catch(() => {});
    // The services and the app are gone: nothing reads these files any more.
    await this.ramDir
      ?.close()
      .catch((err: unknown) => this.logger.warn({ err }, 'could not remove the RAM directory'));
    this.ramDir = null;
  }

  private async superviseApp(settings: Settings, env: NodeJS.ProcessEnv): Promise<void> {
    const tracker = new RestartTracker(settings.app);
    let warnedSeparatePipes = false;
    for (;;) {
      let app: RunningApp;
      try {
        app = await launchApp({
          argv: this.args.app,
          env,
          uid: settings.app.uid,
          gid: settings.app.gid,
          output: this.appOutput(),
        });
      } catch (err) {
        this.failed = true;
        this.board.set({ status: 'fatal', error: (err as Error).message });
        this.logger.error((err as Error).message);
        return;
      }
      this.app = app;
      this.lastPid = app.pid;
      appState.set(1);
      // The arguments may carry secrets (a token, a password flag): only argv[0] and their count at info.
      this.logger.info({ pid: app.pid, argv0: this.args.app[0], argc: this.args.app.length }, 'app started');
      this.logger.debug({ pid: app.pid, argv: this.args.app }, 'app argv');
      if (app.outputPipes === 'separate' && !warnedSeparatePipes) {
        warnedSeparatePipes = true;
        this.logger.warn(
          { reason: app.separateReason },
          'app stdout and stderr are two pipes: lines from the two are logged in arrival order, not the order written',
        );
      }
      this.board.set(
        tracker.restarts > 0
          ? { status: 'running', pid: app.pid, restarts: tracker.restarts }
          : { status: 'running', pid: app.pid },
      );
      // A stop requested while the app was being spawned.
      if (this.stopping) this.stopApp(app);

      const exit = await app.exited;
      this.app = null;
      this.lastExit = exit;
      appState.set(0);
      this.logger.info(
        { pid: app.pid, code: exit.code, signal: exit.signalName },
        `Entrypoint ${describeExit(exit)}`,
      );

      if (this.stopping) break;
      const decision = tracker.decide(exit);
      if (!decision.restart) {
        if (settings.app.restart !== 'never') this.logger.info(`not restarting the app: ${decision.reason}`);
        break;
      }
      appRestarts.inc();
      this.logger.warn(
        { attempt: decision.attempt, delayMs: decision.delayMs },
        `app ${describeExit(exit)}; restarting in ${decision.delayMs} ms (restart ${decision.attempt})`,
      );
      this.board.set({
        status: 'restarting',
        ...(exit.code !== null
          ? { code: exit.code }
          : { signal: exit.signal ?? 0, signal_name: exit.signalName ?? 'unknown' }),
        restarts: decision.attempt,
        delay_ms: decision.delayMs,
      });
      await delayUnless(decision.delayMs, this.stopRequested);
      if (this.stopping) break;
    }
    if (this.lastExit) this.board.set(finalStatus(this.lastExit));
  }

  /**
   * App output: whole lines into the log stream, one LineJoiner per pipe (one when stdout and stderr
   * share a pipe, two otherwise); null (inherit cloister's stdio) with --no-console.
   */
  private appOutput(): AppOutput | null {
    const sink = this.sink;
    if (!sink) return null;
    const joiners = new Map<OutputSource, LineJoiner>();
    return {
      data: (d, from) => {
        let joiner = joiners.get(from);
        if (!joiner) {
          joiner = new LineJoiner((line) => sink.write(line));
          joiners.set(from, joiner);
        }
        joiner.push(d);
      },
      end: () => {
        for (const joiner of joiners.values()) joiner.flush();
      },
    };
  }

  /** Sends `sig` to the app's own process (not its group: a wrapping shell would die of SIGHUP). */
  private signalApp(sig: NodeJS.Signals): boolean {
    const app = this.app;
    if (!app) return false;
    try {
      return process.kill(app.pid, sig);
    } catch {
      return false; // ESRCH: it has just exited
    }
  }

  private onSignal(sig: NodeJS.Signals): void {
    const app = this.app;
    if (app) {
      app.signalGroup(sig);
      this.logger.info({ signal: sig, pid: app.pid }, 'signal forwarded to the app');
    } else {
      this.logger.info({ signal: sig }, 'signal received');
    }
    if (STOP_SIGNALS.has(sig) && !this.stopping) {
      this.stopping = true;
      this.logger.info('stopping');
      if (app) this.stopApp(app, false);
      this.resolveStop();
    }
  }

  /** Grace period, then SIGKILL for the whole group. `signal`: also send SIGTERM now. */
  private stopApp(app: RunningApp, signal = true): void {
    const graceMs = this.appSettings.stop_grace_ms;
    void terminate(
      { signal: (sig) => app.signalGroup(sig), exited: app.exited },
      {
        graceMs,
        sigterm: signal,
        onKill: () =>
          this.logger.warn({ pid: app.pid, graceMs }, 'the app did not stop in time; sending SIGKILL'),
      },
    );
  }

  private fail(message: string): Promise<number> {
    this.failed = true;
    this.board.set({ status: 'fatal', error: message });
    this.logger.error(message);
    return this.stopRequested.then(() => this.shutdown());
  }

  private async shutdown(): Promise<number> {
    await this.closeServices();
    // Whatever the app left running in its process group goes with it (only what descends from us:
    // the group's pid may have been reused since the app ended).
    if (this.lastPid !== null) {
      const pgid = this.lastPid;
      let left = ourGroupMembers(pgid);
      if (left.length > 0) this.logger.info({ pids: left }, 'killing what the app left in its process group');
      // Collect them too, rather than leave zombies to an init that may not reap (dev mode, containers).
      for (let round = 0; left.length > 0 && round < 50; round++) {
        for (const pid of left) {
          try {
            process.kill(pid, 'SIGKILL');
          } catch {
            // ESRCH: gone meanwhile.
          }
        }
        await new Promise((r) => setTimeout(r, 10));
        this.reaper?.sweep();
        left = ourGroupMembers(pgid);
      }
      this.reaper?.sweep();
    }
    this.reaper?.stop();
    const code = this.lastExit ? exitCodeOf(this.lastExit) : this.failed ? 1 : 0;
    this.logger.info({ code }, 'cloister exiting');
    this.board.closeReaders();
    this.logServer?.closeReaders();
    await Promise.all(this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))));
    this.sink?.flushSync();
    return code;
  }
}
