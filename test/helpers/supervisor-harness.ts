// Runs the real `cloister enclave` (dist/cli.js) under `unshare -n`, over the emulated transport, and
// reads its status (17000) and log (17001) streams from the root namespace, as the host side would.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import type { TestContext } from 'node:test';

export const CID = 16;

export const MANIFEST = `version: v1
name: supervisor-test
target: supervisor-test:latest
sources:
  app: supervisor-test-app:latest
`;

export interface EnclaveOptions {
  app: string[];
  /** cloister.yaml contents. */
  settings?: string;
  /** enclaver.yaml contents (default: a minimal valid manifest). */
  manifest?: string;
  /** Extra flags before `--`. */
  flags?: string[];
  /** Pass --no-bootstrap (default true: bootstrap needs the native addon and an NSM). */
  noBootstrap?: boolean;
  /** Also a new PID namespace (with its own /proc), where cloister is PID 1. */
  pid1?: boolean;
  /** The emulated vsock directory (default: a fresh one), e.g. one a host-side relay already serves. */
  vsockDir?: string;
  /** Extra files written into the config directory first (relative path -> contents). */
  confFiles?: Record<string, string | Uint8Array>;
  /** Also a private mount namespace (`unshare -m`): cloister may mount its tmpfs without touching this machine. */
  mountNs?: boolean;
  /** How cloister is told where the config is (default `--config-dir <conf>`). */
  configFlags?: (confDir: string) => string[];
  /** The bundle to run (default dist/cli.js); a copy elsewhere runs without the native addon. */
  cli?: string;
  /** Variables added to the test's environment for cloister (and so its app). */
  env?: Record<string, string>;
}

export interface Enclave {
  proc: ChildProcess;
  dir: string;
  vsockDir: string;
  /** cloister's own stdout (console echo) and stderr, as received so far. */
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Poll until `check` returns a value (not undefined) or the deadline passes. */
export async function waitUntil<T>(
  what: string | (() => string),
  check: () => T | undefined,
  timeoutMs = 10000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline)
      throw new Error(`timed out waiting for ${typeof what === 'function' ? what() : what}`);
    await sleep(20);
  }
}

export function startEnclave(t: TestContext, opts: EnclaveOptions): Enclave {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-sup-'));
  const conf = join(dir, 'conf');
  const vsockDir = opts.vsockDir ?? join(dir, 'vsock');
  mkdirSync(conf);
  writeFileSync(join(conf, 'enclaver.yaml'), opts.manifest ?? MANIFEST);
  if (opts.settings !== undefined) writeFileSync(join(conf, 'cloister.yaml'), opts.settings);
  for (const [rel, data] of Object.entries(opts.confFiles ?? {})) {
    mkdirSync(dirname(join(conf, rel)), { recursive: true });
    writeFileSync(join(conf, rel), data);
  }
  const args = [
    '-n',
    // --fork: the first process of a PID namespace must be a child; --kill-child: it dies with unshare.
    ...(opts.pid1 ? ['-p', '-f', '--mount-proc', '--kill-child'] : []),
    ...(opts.mountNs ? ['-m', '--propagation', 'private'] : []),
    process.execPath,
    opts.cli ?? 'dist/cli.js',
    'enclave',
    ...(opts.configFlags ? opts.configFlags(conf) : ['--config-dir', conf]),
    '--transport',
    'emulated',
    '--vsock-dir',
    vsockDir,
    '--cid',
    String(CID),
    ...(opts.noBootstrap === false ? [] : ['--no-bootstrap']),
    ...(opts.flags ?? []),
    '--',
    ...opts.app,
  ];
  // Without -p, unshare execs (no fork): the pid we get is cloister's own.
  const proc = spawn('unshare', args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: opts.env ? { ...process.env, ...opts.env } : process.env,
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    if (out.length < 4 * 1024 * 1024) out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    if (err.length < 1024 * 1024) err += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once('exit', (code, signal) => r({ code, signal })),
  );
  t.after(async () => {
    if (proc.exitCode === null && proc.signalCode === null) {
      // The app is a session leader of its own (src/supervisor/app.ts): killing cloister alone would
      // leave it running, adopted by init, after the test. Its process group goes too.
      const apps = childPids(proc.pid!);
      proc.kill('SIGKILL');
      await exited;
      for (const pid of apps) killGroup(pid);
    }
    rmSync(dir, { recursive: true, force: true });
  });
  return { proc, dir, vsockDir, stdout: () => out, stderr: () => err, exited };
}

/** Connect to the enclave's (emulated) vsock port, retrying while cloister is still starting. */
export async function connectPort(t: TestContext, enclave: Enclave, port: number): Promise<Socket> {
  const path = join(enclave.vsockDir, String(CID), `${port}.sock`);
  const deadline = Date.now() + 10000;
  for (;;) {
    if (existsSync(path)) {
      const sock = await new Promise<Socket | null>((resolve) => {
        const s = connect(path);
        s.once('connect', () => resolve(s));
        s.once('error', () => resolve(null));
      });
      if (sock) {
        t.after(() => {
          sock.destroy();
        });
        return sock;
      }
    }
    if (enclave.proc.exitCode !== null) {
      throw new Error(
        `cloister exited early (code ${enclave.proc.exitCode}): ${enclave.stderr()}\n${enclave.stdout().slice(-2000)}`,
      );
    }
    if (Date.now() > deadline) throw new Error(`port ${port} never came up; stderr: ${enclave.stderr()}`);
    await sleep(20);
  }
}

/** Reads status lines (vsock 17000) and keeps every one parsed. */
export class StatusReader {
  readonly lines: string[] = [];
  private buf = '';
  closed = false;

  constructor(readonly sock: Socket) {
    sock.setEncoding('utf8');
    sock.on('data', (d: string) => {
      this.buf += d;
      let nl = this.buf.indexOf('\n');
      while (nl !== -1) {
        this.lines.push(this.buf.slice(0, nl));
        this.buf = this.buf.slice(nl + 1);
        nl = this.buf.indexOf('\n');
      }
    });
    sock.on('close', () => {
      this.closed = true;
    });
  }

  get statuses(): Record<string, unknown>[] {
    return this.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  }

  /** Wait for a status line whose `status` field is one of `names`; returns it. */
  async waitFor(names: string[], timeoutMs = 10000): Promise<Record<string, unknown>> {
    return waitUntil(
      `status ${names.join('|')} (got ${JSON.stringify(this.lines)})`,
      () => this.statuses.find((s) => names.includes(s.status as string)),
      timeoutMs,
    );
  }
}

export async function readStatus(t: TestContext, enclave: Enclave): Promise<StatusReader> {
  return new StatusReader(await connectPort(t, enclave, 17000));
}

/** Reads the log stream (vsock 17001) as text. */
export class LogReader {
  private chunks: Buffer[] = [];
  bytes = 0;

  constructor(readonly sock: Socket) {
    sock.on('data', (d: Buffer) => {
      this.chunks.push(d);
      this.bytes += d.length;
    });
  }

  get text(): string {
    return Buffer.concat(this.chunks).toString('utf8');
  }

  async waitFor(needle: string | RegExp, timeoutMs = 10000): Promise<string> {
    return waitUntil(
      `log ${needle}`,
      () => {
        const text = this.text;
        return (typeof needle === 'string' ? text.includes(needle) : needle.test(text)) ? text : undefined;
      },
      timeoutMs,
    );
  }
}

export async function readLogs(t: TestContext, enclave: Enclave): Promise<LogReader> {
  return new LogReader(await connectPort(t, enclave, 17001));
}

/** Parse /proc/<pid>/stat into state and ppid, or null if the process is gone. */
export function procStat(pid: number): { state: string; ppid: number } | null {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'latin1');
    const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: fields[0]!, ppid: Number(fields[1]) };
  } catch {
    return null;
  }
}

/** The direct children of `pid` (Linux: /proc/<pid>/task/<tid>/children). */
function childPids(pid: number): number[] {
  try {
    return readdirSync(`/proc/${pid}/task`).flatMap((tid) =>
      readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean).map(Number),
    );
  } catch {
    return [];
  }
}

/** SIGKILL to the process group led by `pid`, else to `pid` alone; gone already is fine. */
function killGroup(pid: number): void {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
      return;
    } catch {}
  }
}
