// The parent-instance side of one enclave run, shared by `cloister host` (enclave launched by nitro-cli)
// and `cloister dev` (enclave side launched as a local process over the emulated transport):
//
//   egress relay (vsock 17002, if the manifest has egress)   ingress: TCP <host port> -> vsock <port>
//   launch the enclave -> CID -> follow status (17000) and logs (17001) -> final status -> exit code
//
// Exit codes are enclaver-run's (docs/reference/enclaver.md, "Exit codes"): the app's own code when it
// exited, 107 when a signal killed it, 108 when the enclave side failed (fatal status, status port lost), 109
// when we were interrupted (SIGINT/SIGTERM) and terminated the enclave ourselves.

import { hostRelayEnabled } from '../config/egress.ts';
import type { Config } from '../config/types.ts';
import { startEgressRelay } from '../egress/relay.ts';
import { InterruptedError } from '../errors.ts';
import { type HostIngress, type HostPortMapping, startHostIngress } from '../ingress/host.ts';
import type { Logger } from '../log/logger.ts';
import type { AppStatus } from '../supervisor/status.ts';
import type { Transport } from '../transport/types.ts';
import { followLogs, followStatus } from './streams.ts';

export const EXIT_SIGNALED = 107;
export const EXIT_FATAL = 108;
export const EXIT_INTERRUPTED = 109;

export interface LaunchedEnclave {
  cid: number;
  /** e.g. "enclave i-0abc-enc123 (CID 16)". */
  description: string;
  terminate(): Promise<void>;
  /** Resolves if the enclave goes away on its own (dev: the process exited), with a reason. */
  gone?: Promise<string>;
}

export interface SessionReadyInfo {
  cid: number;
  ingress: Map<number, { address: string; port: number }>;
  metrics: { address: string; port: number } | null;
}

export interface HostSessionOptions {
  config: Config;
  transport: Transport;
  logger: Logger;
  /** Where the enclave's log stream (app output) is copied. */
  out: NodeJS.WritableStream;
  launch: () => Promise<LaunchedEnclave>;
  ingress: { listenAddress: string; ports: HostPortMapping[]; proxyProtocol: boolean };
  /** Expose the enclave's /healthz and /metrics on this host port (needs settings.api.metrics_port). */
  metricsHostPort?: number;
  /** Budget for the status port to come up (and to come back after a drop). */
  statusTimeoutMs: number;
  onReady?: (info: SessionReadyInfo) => void;
  /** Signals that stop the session (default SIGINT and SIGTERM). */
  signals?: NodeJS.Signals[];
}

type Outcome =
  | { kind: 'status'; status: AppStatus }
  | { kind: 'lost'; why: string }
  | { kind: 'signal'; sig: string };

/** Undo steps, run last in first out; a step that fails is reported and the others still run. */
export class Teardown {
  private steps: (() => Promise<void> | void)[] = [];

  add(step: () => Promise<void> | void): void {
    this.steps.push(step);
  }

  async run(onError: (err: Error) => void = () => {}): Promise<void> {
    const steps = this.steps.reverse();
    this.steps = [];
    for (const step of steps) {
      try {
        await step();
      } catch (err) {
        onError(err as Error);
      }
    }
  }
}

export function exitCodeFor(s: AppStatus): number | null {
  if (s.status === 'exited') return s.code & 0xff;
  if (s.status === 'signaled') return EXIT_SIGNALED;
  if (s.status === 'fatal') return EXIT_FATAL;
  return null;
}

export async function runHostSession(o: HostSessionOptions): Promise<number> {
  const log = o.logger;
  const teardown = new Teardown();
  const cleanup = () => teardown.run((err) => log.warn({ err }, 'cleanup step failed'));

  let settle!: (o: Outcome) => void;
  const outcome = new Promise<Outcome>((r) => {
    settle = r;
  });
  const signals = o.signals ?? ['SIGINT', 'SIGTERM'];
  const onSignal = (sig: NodeJS.Signals) => settle({ kind: 'signal', sig });
  for (const s of signals) process.on(s, onSignal);
  teardown.add(() => {
    for (const s of signals) process.off(s, onSignal);
  });

  try {
    if (hostRelayEnabled(o.config.manifest)) {
      // enclaver-run listens on 17002 whenever the egress key exists (docs/reference/enclaver.md,
      // "Manifest").
      const relay = await startEgressRelay(
        { connectTimeoutMs: o.config.settings.egress.connect_timeout_ms },
        { transport: o.transport, logger: log },
      );
      teardown.add(() => relay.close());
    }

    const enclave = await Promise.race([
      o.launch(),
      outcome.then((x) => {
        if (x.kind === 'signal') throw new InterruptedError(`interrupted by ${x.sig} while launching`);
        throw new Error('launch aborted');
      }),
    ]);
    teardown.add(() => enclave.terminate());
    log.info(`started ${enclave.description}`);

    const ports = o.ingress.ports;
    let ingress: HostIngress | null = null;
    if (ports.length > 0) {
      ingress = await startHostIngress(
        { ports, listenAddress: o.ingress.listenAddress, proxyProtocol: o.ingress.proxyProtocol },
        { transport: o.transport, enclaveCid: enclave.cid, logger: log },
      );
      const ing = ingress;
      teardown.add(() => ing.close());
    }
    let metrics: { address: string; port: number } | null = null;
    const metricsPort = o.config.settings.api.metrics_port;
    if (o.metricsHostPort !== undefined) {
      if (metricsPort === null) throw new Error('--metrics-port needs api.metrics_port in cloister.yaml');
      const m = await startHostIngress(
        {
          ports: [{ enclavePort: metricsPort, hostPort: o.metricsHostPort }],
          listenAddress: o.ingress.listenAddress,
        },
        { transport: o.transport, enclaveCid: enclave.cid, logger: log },
      );
      teardown.add(() => m.close());
      metrics = m.addresses().get(metricsPort) ?? null;
    }
    o.onReady?.({ cid: enclave.cid, ingress: ingress?.addresses() ?? new Map(), metrics });

    // Streams last, so the banner comes before the app's first line (the log ring replays from the start).
    const logs = followLogs({ transport: o.transport, cid: enclave.cid, logger: log, out: o.out });
    teardown.add(() => logs.stop());
    const status = followStatus({
      transport: o.transport,
      cid: enclave.cid,
      logger: log,
      connectTimeoutMs: o.statusTimeoutMs,
      onStatus: (s) => {
        log.debug({ status: s }, 'enclave status');
        if (exitCodeFor(s) !== null) settle({ kind: 'status', status: s });
      },
      onLost: (err) => settle({ kind: 'lost', why: err.message }),
    });
    teardown.add(() => status.stop());
    void enclave.gone?.then((why) => settle({ kind: 'lost', why }));

    const end = await outcome;
    let code: number;
    if (end.kind === 'status') {
      // The final status can overtake the last lines of output: let the log stream go quiet first.
      await logs.quiet(200, 3000);
      code = exitCodeFor(end.status)!;
      if (end.status.status === 'fatal')
        process.stderr.write(`cloister: enclave failed: ${end.status.error}\n`);
      else if (end.status.status === 'signaled') {
        process.stderr.write(`cloister: the app was killed by ${end.status.signal_name}\n`);
      }
      log.info({ status: end.status, code }, 'enclave app finished');
    } else if (end.kind === 'lost') {
      await logs.quiet(200, 1000);
      process.stderr.write(`cloister: lost the enclave: ${end.why}\n`);
      code = EXIT_FATAL;
    } else {
      log.info({ signal: end.sig }, 'interrupted; terminating the enclave');
      code = EXIT_INTERRUPTED;
    }
    await cleanup();
    return code;
  } catch (err) {
    process.stderr.write(`cloister: ${(err as Error).message}\n`);
    await cleanup();
    return err instanceof InterruptedError ? EXIT_INTERRUPTED : 1;
  }
}
