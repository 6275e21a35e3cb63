// Once a net.Server (or http.Server) is listening, a failed accept() — EMFILE or ENFILE when the process
// or the machine runs out of descriptors, ENOMEM, ECONNABORTED — is emitted as an 'error' event on the
// server. With no listener that event is an uncaught exception that takes the whole daemon down, though
// only one connection was lost and libuv keeps accepting the next ones. So every server of cloister gets
// a listener that logs and lets it keep serving.

/** What the listener needs of a logger (a pino Logger fits). */
export interface ErrorLog {
  error(fields: object, msg: string): void;
}

/** At most one log line a second per server: an fd shortage fails every accept attempt in a row. */
const QUIET_MS = 1000;

/**
 * Logs a listening server's later errors instead of crashing on them. `what` names the server in the
 * log line (e.g. "kms proxy"); `fields` are added to it (e.g. the port).
 */
export function keepServing(
  server: { on(event: 'error', listener: (err: Error) => void): unknown },
  log: ErrorLog | (() => ErrorLog),
  what: string,
  fields: Record<string, unknown> = {},
): void {
  let lastLogged = 0;
  let suppressed = 0;
  server.on('error', (err: NodeJS.ErrnoException) => {
    const now = Date.now();
    if (now - lastLogged < QUIET_MS) {
      suppressed++;
      return;
    }
    lastLogged = now;
    const logger = typeof log === 'function' ? log() : log;
    logger.error(
      // `err` is the Error itself: pino's serializer logs its type, message and stack.
      { ...fields, code: err.code, err, ...(suppressed ? { suppressed } : {}) },
      `${what}: server error (still serving)`,
    );
    suppressed = 0;
  });
}
