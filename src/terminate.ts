// Stopping a process the way every part of cloister does it: SIGTERM, a grace period, then SIGKILL.
// Used for the app (the supervisor, `cloister enclave`) and for the enclave side (`cloister dev`); the
// timer is cleared once the process is gone, so a stop that went well leaves nothing pending.

export interface Stoppable {
  /** Sends `signal` (to the process, its group, or both: the caller decides). */
  signal(signal: NodeJS.Signals): void;
  /** Settles once the process has exited. */
  exited: Promise<unknown>;
}

export interface TerminateOptions {
  /** How long after SIGTERM the process may take to exit before SIGKILL. */
  graceMs: number;
  /** False when SIGTERM has already been sent (e.g. forwarded from cloister's own): only the SIGKILL follows. */
  sigterm?: boolean;
  /** Called just before the SIGKILL (to log it). */
  onKill?: () => void;
}

/** SIGTERM, then SIGKILL after `graceMs` unless it exited; resolves once it has exited. */
export async function terminate(target: Stoppable, opts: TerminateOptions): Promise<void> {
  if (opts.sigterm ?? true) target.signal('SIGTERM');
  const timer = setTimeout(() => {
    opts.onKill?.();
    target.signal('SIGKILL');
  }, opts.graceMs);
  try {
    await target.exited;
  } finally {
    clearTimeout(timer);
  }
}
