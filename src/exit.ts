// How a long-running command (`cloister enclave`, `host`, `dev`) ends: by having closed everything, so
// Node exits on its own with the command's code. A handle still open after that is a bug; rather than
// hang whoever waits for the process (the host, a test), it is named on stderr and the process exits.

/** How long an exit may be held up by a forgotten handle before it is named and cut short. */
const STRAGGLER_MS = 2000;

/** Sets the exit code and lets the process end once its handles are closed. */
export function exitWhenClosed(command: string, code: number): void {
  process.exitCode = code;
  const watchdog = setTimeout(() => {
    const open = process.getActiveResourcesInfo().filter((r) => r !== 'Timeout');
    process.stderr.write(
      `cloister ${command}: still open after shutdown: ${open.join(', ') || '(timers)'}\n`,
    );
    process.exit(code);
  }, STRAGGLER_MS);
  // An unref'd timer never holds the process up itself: it fires only when something else does.
  watchdog.unref();
}
