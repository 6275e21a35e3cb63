// Ingress benchmark: HTTP requests/s and latency (wrk) and 1 GiB throughput, through the whole ingress
// path vs straight to the app:
//
//   wrk -> host listener (cloister dev, host side) -> emulated vsock (Unix socket) -> enclave side
//       -> 127.0.0.1:<port> (app)                       vs          wrk -> 127.0.0.1:<port> (app)
//
// The real processes run: `cloister dev --no-isolate` (so the app's port is also reachable directly for
// the baseline). Run: npm run build && node --import tsx bench/ingress.ts [--before <tree>]
// Writes bench/results/ingress.json.
//
// `--before <tree>` adds "ingress-before" rows from a second `cloister dev` run from another checkout's
// dist/ (bench/before-tree.sh makes one), measured in the same invocation, alternating with this tree.
// For the new-connection test it also prints the CPU (user + system, /proc/<pid>/stat) that the host
// side, the enclave side and the app spent per request: a number that moves far less with load than
// the wall-clock rates when other work shares the cores.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { cpuUs } from './measure.ts';

const run = promisify(execFile);
const { values } = parseArgs({ options: { before: { type: 'string' } } });
const DURATION = process.env.BENCH_DURATION ?? '5s';
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 50);
const GIB = 1024 * 1024 * 1024;

async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', () => r()));
  const p = (s.address() as { port: number }).port;
  await new Promise((r) => s.close(r));
  return p;
}

const APP = `
import { createServer } from 'node:http';
import { createServer as tcp } from 'node:net';
const [httpPort, sinkPort] = process.argv.slice(2).map(Number);
createServer((req, res) => res.end('hello world\\n')).listen(httpPort, '127.0.0.1');
// Counts what it receives; answers the count once the client half-closes.
tcp({ allowHalfOpen: true }, (s) => { let n = 0; s.on('data', (d) => { n += d.length; }); s.on('end', () => s.end(String(n))); })
  .listen(sinkPort, '127.0.0.1', () => console.log('bench app ready'));
`;

interface WrkResult {
  requests: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

function toMs(v: string): number {
  const m = /^([\d.]+)(us|ms|s)$/.exec(v.trim());
  if (!m) return Number.NaN;
  const n = Number(m[1]);
  return m[2] === 'us' ? n / 1000 : m[2] === 's' ? n * 1000 : n;
}

async function wrk(url: string, keepAlive: boolean): Promise<WrkResult> {
  const args = ['-t1', `-c${CONNECTIONS}`, `-d${DURATION}`, '--latency'];
  if (!keepAlive) args.push('-H', 'Connection: close');
  const { stdout } = await run('wrk', [...args, url], { maxBuffer: 1 << 20 });
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1]);
  const p50 = toMs(/\s50%\s+(\S+)/.exec(stdout)?.[1] ?? '');
  const p99 = toMs(/\s99%\s+(\S+)/.exec(stdout)?.[1] ?? '');
  const errLine = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(stdout);
  const non2xx = Number(/Non-2xx or 3xx responses: (\d+)/.exec(stdout)?.[1] ?? 0);
  const errors = (errLine ? errLine.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + non2xx;
  const requests = Number(/(\d+) requests in/.exec(stdout)?.[1]);
  return { requests, rps, p50ms: p50, p99ms: p99, errors };
}

async function throughput(port: number): Promise<{ seconds: number; mibPerS: number }> {
  const block = Buffer.alloc(1024 * 1024, 0x5a);
  const sock = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  await new Promise((r) => sock.once('connect', r));
  const start = process.hrtime.bigint();
  let reply = '';
  sock.setEncoding('utf8');
  sock.on('data', (d: string) => {
    reply += d;
  });
  const closed = new Promise((r) => sock.on('close', r));
  for (let i = 0; i < GIB / block.length; i++) {
    if (!sock.write(block)) await new Promise((r) => sock.once('drain', r));
  }
  sock.end();
  await closed;
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (Number(reply) !== GIB) throw new Error(`the app counted ${reply} bytes, not ${GIB}`);
  return { seconds, mibPerS: 1024 / seconds };
}

/** A running `cloister dev` from `tree` with its own app: the ports direct and through ingress. */
interface Dev {
  name: string;
  proc: ChildProcess;
  dir: string;
  httpPort: number;
  sinkPort: number;
  hostHttp: number;
  hostSink: number;
}

async function startDev(name: string, tree: string): Promise<Dev> {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-bench-ingress-'));
  const [httpPort, sinkPort, hostHttp, hostSink] = [
    await freePort(),
    await freePort(),
    await freePort(),
    await freePort(),
  ];
  writeFileSync(join(dir, 'app.mjs'), APP);
  writeFileSync(
    join(dir, 'enclaver.yaml'),
    `version: v1\nname: bench\ntarget: bench:latest\nsources:\n  app: app:latest\ningress:\n  - listen_port: ${httpPort}\n  - listen_port: ${sinkPort}\n`,
  );
  const proc: ChildProcess = spawn(
    process.execPath,
    [
      join(tree, 'dist/cli.js'),
      'dev',
      '-f',
      join(dir, 'enclaver.yaml'),
      '--state-dir',
      join(dir, 'state'),
      '--no-isolate',
      '--quiet',
      '-p',
      `${hostHttp}:${httpPort}`,
      '-p',
      `${hostSink}:${sinkPort}`,
      '--',
      process.execPath,
      join(dir, 'app.mjs'),
      String(httpPort),
      String(sinkPort),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  await new Promise<void>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error('bench app did not start')), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('bench app ready')) {
        clearTimeout(t);
        resolve();
      }
    });
    proc.once('exit', (c) => reject(new Error(`cloister dev exited (${c})`)));
  });
  return { name, proc, dir, httpPort, sinkPort, hostHttp, hostSink };
}

async function stopDev(dev: Dev): Promise<void> {
  dev.proc.kill('SIGTERM');
  await new Promise((r) => (dev.proc.exitCode !== null ? r(null) : dev.proc.once('exit', r)));
  rmSync(dev.dir, { recursive: true, force: true });
}

// CPU (measure.ts cpuUs) of the dev process (host side), its child (the enclave side) and that one's
// child (the app).
const childOf = (pid: number) =>
  Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/)[0]);
function roles(dev: Dev): { host: number; enclave: number; app: number } {
  const host = dev.proc.pid!;
  const enclave = childOf(host);
  return { host, enclave, app: childOf(enclave) };
}

async function main() {
  const devs = [await startDev('ingress', '.')];
  if (values.before) devs.push(await startDev('ingress-before', values.before));
  const direct = devs[0]!;
  try {
    const rows: Record<string, unknown>[] = [];
    for (const keepAlive of [true, false]) {
      const test = `http ${keepAlive ? 'keep-alive' : 'new connection per request'}`;
      const d = await wrk(`http://127.0.0.1:${direct.httpPort}/`, keepAlive);
      rows.push({ test, path: 'direct', ...d });
      for (const dev of devs) {
        const pids = roles(dev);
        const before = { host: cpuUs(pids.host), enclave: cpuUs(pids.enclave), app: cpuUs(pids.app) };
        const r = await wrk(`http://127.0.0.1:${dev.hostHttp}/`, keepAlive);
        const { requests } = r;
        const cpu = keepAlive
          ? undefined
          : {
              host: (cpuUs(pids.host) - before.host) / requests,
              enclave: (cpuUs(pids.enclave) - before.enclave) / requests,
              app: (cpuUs(pids.app) - before.app) / requests,
            };
        rows.push({ test, path: dev.name, ...r, pctDirect: (100 * r.rps) / d.rps, cpu });
      }
    }
    const up = await throughput(direct.sinkPort);
    rows.push({ test: '1 GiB upload', path: 'direct', seconds: up.seconds, mibPerS: up.mibPerS });
    for (const dev of devs) {
      const r = await throughput(dev.hostSink);
      rows.push({ test: '1 GiB upload', path: dev.name, ...r, pctDirect: (100 * r.mibPerS) / up.mibPerS });
    }
    console.table(
      rows.map((r) => {
        const cpu = r.cpu as { host: number; enclave: number; app: number } | undefined;
        return {
          test: r.test,
          path: r.path,
          'req/s': r.rps !== undefined ? Math.round(r.rps as number) : '',
          'p50 ms': r.p50ms !== undefined ? (r.p50ms as number).toFixed(2) : '',
          'p99 ms': r.p99ms !== undefined ? (r.p99ms as number).toFixed(2) : '',
          errors: r.errors ?? '',
          'MiB/s': r.mibPerS !== undefined ? Math.round(r.mibPerS as number) : '',
          '% direct': r.pctDirect !== undefined ? `${(r.pctDirect as number).toFixed(0)}%` : '',
          'CPU µs/req host+enclave (app)': cpu
            ? `${cpu.host.toFixed(0)}+${cpu.enclave.toFixed(0)} (${cpu.app.toFixed(0)})`
            : '',
        };
      }),
    );
    mkdirSync('bench/results', { recursive: true });
    writeFileSync(
      'bench/results/ingress.json',
      `${JSON.stringify({ date: new Date().toISOString(), node: process.version, connections: CONNECTIONS, duration: DURATION, rows }, null, 2)}\n`,
    );
  } finally {
    for (const dev of devs) await stopDev(dev);
  }
}

await main();
