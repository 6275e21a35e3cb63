// The supervisor's own logs: pino JSON lines. In the enclave they go into the same stream as the
// app's output (the log ring served on vsock 17001), so one reader sees both in order.
import { type DestinationStream, type Logger, pino } from 'pino';

export type { Logger };

export interface LoggerOptions {
  level?: string;
  name?: string;
  destination?: DestinationStream;
}

export function createLogger(opts: LoggerOptions = {}): Logger {
  return pino(
    {
      name: opts.name ?? 'cloister',
      level: opts.level ?? process.env.CLOISTER_LOG_LEVEL ?? 'info',
      base: undefined,
      // Secrets must never reach a log line: redact the usual suspects wherever they appear.
      redact: {
        paths: [
          '*.Plaintext',
          '*.PrivateKeyPlaintext',
          '*.SecretAccessKey',
          '*.secretAccessKey',
          '*.sessionToken',
          '*.authorization',
          '*.Authorization',
        ],
        censor: '[redacted]',
      },
    },
    opts.destination ?? pino.destination({ fd: 2, sync: true }),
  );
}
