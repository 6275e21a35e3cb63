// What a lab scenario gets: the guest's paths, child processes with their output collected, polling,
// and the host side (`cloister host --attach-cid 1`) shared by the "pid1" scenarios. Runs inside the
// guest on Node 26, which strips the types itself (so: no enums, no parameter properties, `.ts` imports).
import { type ChildProcess, spawn } from 'node:child_process';
import { connect } from 'node:net';

export interface LabEnv {
  /** This checkout, as seen in the guest (the host's root is the guest's root). */
  repo: string;
  /** The single executable under test. */
  bin: string;
  /** Node 26, which runs the scenarios themselves. */
  node: string;
  /** Shared with the host, writable: results, artefacts, the pid1 config. */
  results: string;
}

export function labEnv(): LabEnv {
  const need = (k: string) => {
    const v = process.env[k];
    if (!v) throw new Error(`${k} is not set (lab.env)`);
    return v;
  };
  return { repo: need('REPO'), bin: need('BIN'), node: need('NODE'), results: '/tmp/lab' };
}

/**
 * One scenario per file in test/lab/scenarios/, exported as `scenario`. Files run in name order within
 * their phase: "pre" runs while busybox is still PID 1 (lo down, no cloister yet), "pid1" while the
 * single executable is PID 1 with the config test/lab/lab.test.ts wrote to <results>/config.
 */
export interface Scenario {
  title: string;
  phase: 'pre' | 'pid1';
  /** Guest-side budget (default 60 s under TCG). */
  timeoutMs?: number;
  run(ctx: ScenarioContext): Promise<void>;
  /**
   * The scenario takes PID 1 down, so the guest powers off before it can report: the driver records that
   * it started, and `afterBoot` (on the host, after QEMU exits) judges it from files and the console.
   */
  endsBoot?: boolean;
  afterBoot?(view: HostView): void;
}

export interface ScenarioContext {
  env: LabEnv;
  /** A fresh directory in the guest's tmpfs. */
  tmp: string;
  /** Numbers and facts for the report and the benchmarks (written into the result). */
  note(key: string, value: unknown): void;
  /** Runs when the scenario ends, pass or fail (last added, first run). */
  defer(fn: () => Promise<void> | void): void;
}

export interface HostView {
  results: string;
  console: string;
}

export interface Proc {
  child: ChildProcess;
  out(): string;
  err(): string;
  /** The exit code, or 128+signal. */
  exited: Promise<number>;
  waitFor(what: string, cond: () => boolean, ms?: number): Promise<void>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number>;
}

const SIGNALS: Record<string, number> = { SIGKILL: 9, SIGTERM: 15, SIGINT: 2, SIGSEGV: 11, SIGABRT: 6 };

export function start(ctx: ScenarioContext, cmd: string, args: string[], env?: NodeJS.ProcessEnv): Proc {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: env ?? process.env });
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number>((resolve) =>
    child.on('close', (code, sig) => resolve(code ?? 128 + (SIGNALS[sig ?? ''] ?? 0))),
  );
  child.on('error', () => {});
  const done = () => child.exitCode !== null || child.signalCode !== null;
  const proc: Proc = {
    child,
    out: () => out,
    err: () => err,
    exited,
    async waitFor(what, cond, ms = 30_000) {
      const end = Date.now() + ms;
      while (!cond()) {
        if (done())
          throw new Error(
            `${cmd} exited before ${what}\nstdout:\n${out.slice(-3000)}\nstderr:\n${err.slice(-3000)}`,
          );
        if (Date.now() > end)
          throw new Error(
            `timed out waiting for ${what}\nstdout:\n${out.slice(-3000)}\nstderr:\n${err.slice(-3000)}`,
          );
        await sleep(50);
      }
    },
    async stop(graceMs = 10_000) {
      if (!done()) {
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
        await exited;
        clearTimeout(t);
      }
      return exited;
    },
  };
  ctx.defer(() => proc.stop(2000).then(() => {}));
  return proc;
}

/** The single executable: `cloister <args>`. */
export function cloister(ctx: ScenarioContext, args: string[], env?: NodeJS.ProcessEnv): Proc {
  return start(ctx, ctx.env.bin, args, env);
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForTcp(port: number, ms = 30_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        resolve(true);
      });
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > end) throw new Error(`nothing listens on 127.0.0.1:${port} after ${ms} ms`);
    await sleep(100);
  }
}

/** A minimal enclaver.yaml plus cloister.yaml for a short-lived cloister enclave (not PID 1). */
export function minimalManifest(name: string): string {
  return `version: v1\nname: ${name}\ntarget: ${name}:latest\nsources:\n  app: app:latest\n`;
}
