// The supervisor's own logs: pino JSON lines. In the enclave they go into the same stream as the
// app's output (the log ring served on vsock 17001), so one reader sees both in order.
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name?: string;
  destination?: DestinationStream;
}

/** Field names that carry secrets in KMS replies, AWS credentials and HTTP headers. */
const SECRET_FIELDS = [
  'Plaintext',
  'PrivateKeyPlaintext',
  'SharedSecret',
  'SecretAccessKey',
  'secretAccessKey',
  'SessionToken',
  'sessionToken',
  'Token',
  'privateKey',
  'authorization',
  'Authorization',
  '["x-amz-security-token"]',
  '["x-aws-ec2-metadata-token"]',
];

/** Each field at the top level, one level down and inside request headers (`*.x` alone misses `x`). */
const REDACT_PATHS = SECRET_FIELDS.flatMap((f) => {
  const dot = f.startsWith('[') ? '' : '.';
  return [f, `*${dot}${f}`, `*.headers${dot}${f}`];
});

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'cloister',
      level: opts.level ?? process.env.CLOISTER_LOG_LEVEL ?? 'info',
      base: undefined,
      // Secrets must never reach a log line: redact the usual suspects wherever they appear.
      redact: {
        paths: REDACT_PATHS,
        censor: '[redacted]',
      },
    },
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
