// Readers of the enclave's status (vsock 17000) and log (17001) streams, used by `cloister host` and
// `cloister dev`. Unlike enclaver-run: both reconnect after EOF, a signal status is understood (number or
// name), and app output is copied as bytes, so no line is ever cut at 4096 bytes.
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Logger } from '../log/logger.ts';
import { type AppStatus, parseStatusLine } from '../supervisor/status.ts';
import { APP_LOG_PORT, STATUS_PORT, type Transport } from '../transport/types.ts';

const RETRY_MS = 250;
/** Status lines are at most 1024 bytes (docs/reference/enclaver.md, "Status port"); more is cut off. */
const STATUS_LINE_MAX = 64 * 1024;

export interface Follower {
  stop(): void;
}

async function connectRetry(
  transport: Transport,
  cid: number,
  port: number,
  stopped: () => boolean,
  deadline: number,
): Promise<Socket | null> {
  for (;;) {
    if (stopped()) return null;
    try {
      return await transport.connect(cid, port);
    } catch (err) {
      if (Date.now() > deadline) throw err;
      await sleep(RETRY_MS);
    }
  }
}

export interface StatusFollowOptions {
  transport: Transport;
  cid: number;
  logger: Logger;
  onStatus: (s: AppStatus) => void;
  /** Called when the status port cannot be reached within the budget. */
  onLost: (err: Error) => void;
  /** Budget for the first connection (the enclave boots) and for each reconnection. */
  connectTimeoutMs: number;
}

export function followStatus(o: StatusFollowOptions): Follower {
  let stopped = false;
  let sock: Socket | null = null;
  void (async () => {
    while (!stopped) {
      try {
        sock = await connectRetry(
          o.transport,
          o.cid,
          STATUS_PORT,
          () => stopped,
          Date.now() + o.connectTimeoutMs,
        );
      } catch (err) {
        if (!stopped) o.onLost(new Error(`cannot reach the enclave status port: ${(err as Error).message}`));
        return;
      }
      if (!sock) return;
      await new Promise<void>((resolve) => {
        let buf = '';
        sock!.setEncoding('utf8');
        sock!.on('data', (d: string) => {
          buf += d;
          let nl = buf.indexOf('\n');
          while (nl >= 0) {
            const line = buf.slice(0, nl);
            buf = buf.slice(nl + 1);
            const st = parseStatusLine(line);
            if (st) o.onStatus(st);
            else o.logger.warn({ line: line.slice(0, 200) }, 'unparsable status line skipped');
            nl = buf.indexOf('\n');
          }
          if (buf.length > STATUS_LINE_MAX) sock!.destroy();
        });
        sock!.on('error', () => {});
        // Transport sockets are half-open capable: EOF alone would never close ours.
        sock!.on('end', () => sock!.destroy());
        sock!.on('close', () => resolve());
      });
      if (!stopped) {
        o.logger.debug('enclave status port closed; reconnecting');
        await sleep(RETRY_MS);
      }
    }
  })();
  return {
    stop() {
      stopped = true;
      sock?.destroy();
    },
  };
}

export interface LogFollowOptions {
  transport: Transport;
  cid: number;
  logger: Logger;
  out: NodeJS.WritableStream;
}

/** How much already-printed output is kept to recognise the replayed backlog after a reconnection. */
const TAIL_BYTES = 4096;
/** How long to gather the backlog after a reconnection before giving up on finding the overlap. */
const REPLAY_WAIT_MS = 300;

export interface LogFollower extends Follower {
  /** Resolves once no log bytes arrived for idleMs (bounded by maxMs): the tail of the app's output is in. */
  quiet(idleMs: number, maxMs: number): Promise<void>;
}

export function followLogs(o: LogFollowOptions): LogFollower {
  let stopped = false;
  let sock: Socket | null = null;
  let tail = Buffer.alloc(0);
  let lastData = Date.now();
  let connected = false;
  const emit = (b: Buffer) => {
    if (b.length === 0) return;
    o.out.write(b);
    tail = Buffer.concat([tail, b]);
    if (tail.length > TAIL_BYTES) tail = tail.subarray(tail.length - TAIL_BYTES);
  };
  void (async () => {
    let first = true;
    while (!stopped) {
      // The log port comes up with the status port; keep trying as long as we are running.
      sock = await connectRetry(
        o.transport,
        o.cid,
        APP_LOG_PORT,
        () => stopped,
        Number.POSITIVE_INFINITY,
      ).catch(() => null);
      if (!sock) return;
      connected = true;
      // Quiet is counted from the connection: the ring's replay may take a moment to arrive.
      lastData = Date.now();
      const replaying = !first && tail.length > 0;
      first = false;
      await new Promise<void>((resolve) => {
        // After a reconnection the enclave replays its ring from the oldest byte it kept: skip what we
        // already printed by finding the last bytes we printed in the replay.
        let pending: Buffer | null = replaying ? Buffer.alloc(0) : null;
        const flushPending = (found: boolean) => {
          if (!pending) return;
          const p = pending;
          pending = null;
          if (found) return;
          o.out.write('[cloister] log stream reconnected; some lines may repeat\n');
          emit(p);
        };
        const timer = replaying ? setTimeout(() => flushPending(false), REPLAY_WAIT_MS) : undefined;
        sock!.on('data', (d: Buffer) => {
          lastData = Date.now();
          if (!pending) return emit(d);
          pending = Buffer.concat([pending, d]);
          const at = pending.lastIndexOf(tail);
          if (at >= 0) {
            clearTimeout(timer);
            const rest = pending.subarray(at + tail.length);
            pending = null;
            emit(rest);
          }
        });
        sock!.on('error', () => {});
        sock!.on('end', () => sock!.destroy());
        sock!.on('close', () => {
          clearTimeout(timer);
          flushPending(false);
          resolve();
        });
      });
      connected = false;
      if (!stopped) await sleep(RETRY_MS);
    }
  })();
  return {
    stop() {
      stopped = true;
      sock?.destroy();
    },
    async quiet(idleMs, maxMs) {
      const end = Date.now() + maxMs;
      while (Date.now() < end) {
        if (connected && Date.now() - lastData >= idleMs) return;
        await sleep(Math.min(idleMs, 50));
      }
    },
  };
}
