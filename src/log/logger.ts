// The supervisor's own logs: pino JSON lines. In the enclave they go into the same stream as the
// app's output (the log ring served on vsock 17001), so one reader sees both in order.
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name?: string;
  destination?: DestinationStream;
}

/** Field names that carry secrets in KMS replies, AWS credentials and HTTP headers (any letter case). */
const SECRET_FIELDS = new Set(
  [
    'Plaintext',
    'PrivateKeyPlaintext',
    'SharedSecret',
    'SecretAccessKey',
    'SessionToken',
    'Token',
    'privateKey',
    'authorization',
    'x-amz-security-token',
    'x-aws-ec2-metadata-token',
  ].map((f) => f.toLowerCase()),
);
const CENSOR = '[redacted]';
/** Deeper than any object cloister logs; beyond it a value is dropped rather than searched. */
const MAX_DEPTH = 32;

/**
 * `value` with every field named like a secret censored, at any depth of plain objects and arrays; the
 * caller's objects are never changed (what holds a secret is copied, the rest is shared). pino's own
 * redaction takes fixed paths (`*.x` is one level), so a secret one level deeper than the paths would leak.
 */
export function redactSecrets(value: unknown, depth = 0, seen = new Set<object>()): unknown {
  if (value === null || typeof value !== 'object') return value;
  const proto = Object.getPrototypeOf(value);
  if (!Array.isArray(value) && proto !== Object.prototype && proto !== null) return value; // Error, Buffer...
  if (seen.has(value)) return '[Circular]'; // the original would bring its secrets back in
  if (depth >= MAX_DEPTH) return '[too deep to log]';
  seen.add(value);
  let copy: Record<string, unknown> | unknown[] | undefined;
  for (const [k, v] of Object.entries(value)) {
    const r =
      v !== undefined && SECRET_FIELDS.has(k.toLowerCase()) ? CENSOR : redactSecrets(v, depth + 1, seen);
    if (r === v) continue;
    copy ??= Array.isArray(value) ? [...value] : { ...value };
    (copy as Record<string, unknown>)[k] = r;
  }
  seen.delete(value);
  return copy ?? value;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'cloister',
      level: opts.level ?? process.env.CLOISTER_LOG_LEVEL ?? 'info',
      base: undefined,
      // Secrets must never reach a log line: censor the usual suspects at any depth.
      formatters: { log: (fields) => redactSecrets(fields) as Record<string, unknown> },
    },
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
