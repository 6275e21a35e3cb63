// Launching the app the way odyn does (enclaver-compat.md §6): its argv exactly (no shell), argv[0]
// looked up in PATH, stdin inherited, stdout/stderr piped into the log stream, its own process group
// so signals reach everything it started. Node offers no bare setpgid: `detached` makes the app a
// session leader (setsid), which also gives it its own process group with pgid = pid.
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import { signalName } from './status.ts';

export interface AppSpec {
  argv: string[];
  env: NodeJS.ProcessEnv;
  uid?: number | null;
  gid?: number | null;
  /** Each output chunk (stdout or stderr), or null to let the app write to cloister's own stdout/stderr. */
  output: { stdout: (data: Buffer) => void; stderr: (data: Buffer) => void; end: () => void } | null;
}

export interface AppExit {
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  /** Signal number, or null when it exited. */
  signal: number | null;
  signalName: string | null;
  /** How long this run lasted. */
  ranMs: number;
}

export class AppStartError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
    this.name = 'AppStartError';
  }
}

/** How long to wait after the app's exit for its last output to come through the pipes. */
const OUTPUT_SETTLE_MS = 250;

export interface RunningApp {
  readonly pid: number;
  /** Resolves once the app is gone and its output drained (or orphans kept the pipes open too long). */
  readonly exited: Promise<AppExit>;
  /** Signal the app's whole process group. Returns false if there was nobody to signal. */
  signalGroup(signal: NodeJS.Signals): boolean;
}

function describeSpawnError(argv0: string, err: NodeJS.ErrnoException): string {
  switch (err.code) {
    case 'ENOENT':
      return argv0.includes('/')
        ? `cannot start the app: ${argv0}: no such file (ENOENT)`
        : `cannot start the app: ${argv0}: not found in PATH (ENOENT; PATH=${process.env.PATH ?? ''})`;
    case 'EACCES':
      return `cannot start the app: ${argv0}: permission denied (EACCES; is it executable?)`;
    case 'ENOEXEC':
      return `cannot start the app: ${argv0}: not an executable format (ENOEXEC)`;
    case 'EPERM':
      return `cannot start the app: ${argv0}: operation not permitted (EPERM; uid/gid change needs root)`;
    default:
      return `cannot start the app: ${argv0}: ${err.message}`;
  }
}

export function launchApp(spec: AppSpec): Promise<RunningApp> {
  const [file, ...args] = spec.argv;
  if (file === undefined || file === '')
    return Promise.reject(new AppStartError('no app command given', undefined));
  const startedAt = performance.now();
  let child: ChildProcess;
  try {
    child = spawn(file, args, {
      env: spec.env,
      detached: true,
      stdio: ['inherit', spec.output ? 'pipe' : 'inherit', spec.output ? 'pipe' : 'inherit'],
      ...(spec.uid != null ? { uid: spec.uid } : {}),
      ...(spec.gid != null ? { gid: spec.gid } : {}),
    });
  } catch (err) {
    // Synchronous failures: invalid uid/gid, bad argument types.
    return Promise.reject(
      new AppStartError(describeSpawnError(file, err as NodeJS.ErrnoException), undefined),
    );
  }

  let outputDone: Promise<void> = Promise.resolve();
  if (spec.output) {
    const out = spec.output;
    const open = [child.stdout!, child.stderr!];
    child.stdout!.on('data', out.stdout);
    child.stderr!.on('data', out.stderr);
    outputDone = Promise.all(open.map((s) => new Promise<void>((r) => s.once('close', r)))).then(() =>
      out.end(),
    );
  }

  return new Promise((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) reject(new AppStartError(describeSpawnError(file, err), err.code));
    });
    child.once('spawn', () => {
      const pid = child.pid!;
      // Once Node has collected the app its pid may be reused: stop signalling its group from then on.
      let alive = true;
      const exited = new Promise<AppExit>((done) => {
        child.once('exit', (code, sig) => {
          alive = false;
          const ranMs = performance.now() - startedAt;
          const signo = sig ? ((constants.signals as Record<string, number>)[sig] ?? null) : null;
          const result: AppExit = {
            code,
            signal: signo,
            signalName: sig ?? (signo ? signalName(signo) : null),
            ranMs,
          };
          // Orphans may hold the pipes open for ever: wait for the output only briefly.
          let settle: NodeJS.Timeout | undefined;
          const timeout = new Promise<void>((r) => {
            settle = setTimeout(r, OUTPUT_SETTLE_MS);
          });
          Promise.race([outputDone, timeout]).then(() => {
            clearTimeout(settle);
            done(result);
          });
        });
      });
      resolve({
        pid,
        exited,
        signalGroup(signal) {
          if (!alive) return false;
          try {
            process.kill(-pid, signal);
            return true;
          } catch {
            return false; // ESRCH: the group is empty
          }
        },
      });
    });
  });
}
