// Launching the app the way odyn does (docs/reference/enclaver.md, "App process"): its argv exactly (no
// shell), argv[0] looked up in PATH, stdin inherited, stdout/stderr piped into the log stream, its own
// process group so signals reach everything it started. Node offers no bare setpgid: `detached` makes the app
// a session leader (setsid), which also gives it its own process group with pgid = pid. stdout and stderr
// share one pipe when the native addon can make it (output-pipe.ts), as with odyn, so their relative order is
// the app's own; without the addon they are two pipes, read in arrival order.
import { type ChildProcess, spawn } from 'node:child_process';
import { constants } from 'node:os';
import type { Readable } from 'node:stream';
import { delayUnless } from '../deadline.ts';
import { AppStartError } from '../errors.ts';
import { openSharedPipe, type SharedPipe, sharedPipeUnavailable } from './output-pipe.ts';
import { registerNodeChild } from './reaper.ts';
import { signalName } from './status.ts';

/** Where a chunk of app output came from: the one shared pipe, or one of two separate ones. */
export type OutputSource = 'both' | 'stdout' | 'stderr';

export interface AppOutput {
  /** A chunk as read from a pipe (not split into lines). */
  data(chunk: Buffer, from: OutputSource): void;
  /** Every pipe reached EOF (or closed). */
  end(): void;
}

export interface AppSpec {
  argv: string[];
  env: NodeJS.ProcessEnv;
  uid?: number | null;
  gid?: number | null;
  /** Where the app's output goes, or null to let it write to cloister's own stdout/stderr. */
  output: AppOutput | null;
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

export { AppStartError };

/** How long to wait after the app's exit for its last output to come through the pipes. */
const OUTPUT_SETTLE_MS = 250;

export interface RunningApp {
  readonly pid: number;
  /** How the app's stdout/stderr reach cloister: one shared pipe, two pipes, or inherited (no output). */
  readonly outputPipes: 'shared' | 'separate' | 'inherited';
  /** Why the output is two separate pipes (null otherwise). */
  readonly separateReason: string | null;
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
  let shared: SharedPipe | null = null;
  let separateReason: string | null = null;
  if (spec.output) {
    try {
      shared = openSharedPipe();
      if (!shared) separateReason = sharedPipeUnavailable();
    } catch (err) {
      // Out of fds, most likely: fall back to spawn's own pipes, which fail the same way and report it.
      separateReason = `cannot make the shared pipe: ${(err as Error).message}`;
    }
  }
  const outputPipes = !spec.output ? 'inherited' : shared ? 'shared' : 'separate';
  const startedAt = performance.now();
  let child: ChildProcess;
  try {
    const out = shared ? shared.writeFd : spec.output ? 'pipe' : 'inherit';
    child = spawn(file, args, {
      env: spec.env,
      detached: true,
      // An integer fd is dup2()ed onto the app's fd: with the shared pipe fds 1 and 2 are the same pipe.
      stdio: ['inherit', out, out],
      ...(spec.uid != null ? { uid: spec.uid } : {}),
      ...(spec.gid != null ? { gid: spec.gid } : {}),
    });
  } catch (err) {
    // Synchronous failures: invalid uid/gid, bad argument types.
    shared?.closeWriteEnd();
    shared?.output.destroy();
    return Promise.reject(
      new AppStartError(describeSpawnError(file, err as NodeJS.ErrnoException), undefined),
    );
  }
  // Before anything else can run: the reaper must never collect the app's exit status from libuv.
  registerNodeChild(child);
  // spawn() returns once the app has exec()ed (or failed to): it holds its own copies of the write end
  // by now. Ours must go, or the read end would never see EOF.
  shared?.closeWriteEnd();

  let outputDone: Promise<void> = Promise.resolve();
  if (spec.output) {
    const out = spec.output;
    const streams: [Readable, OutputSource][] = shared
      ? [[shared.output, 'both']]
      : [
          [child.stdout!, 'stdout'],
          [child.stderr!, 'stderr'],
        ];
    for (const [stream, from] of streams) {
      stream.on('data', (d: Buffer) => out.data(d, from));
      // A read error ends that pipe like EOF; the app's exit is still reported.
      stream.on('error', () => {});
    }
    outputDone = Promise.all(streams.map(([s]) => new Promise<void>((r) => s.once('close', r)))).then(() =>
      out.end(),
    );
  }

  return new Promise((resolve, reject) => {
    child.once('error', (err: NodeJS.ErrnoException) => {
      if (child.pid === undefined) {
        shared?.output.destroy();
        reject(new AppStartError(describeSpawnError(file, err), err.code));
      }
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
          void delayUnless(OUTPUT_SETTLE_MS, outputDone).then(() => done(result));
        });
      });
      resolve({
        pid,
        outputPipes,
        separateReason,
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
