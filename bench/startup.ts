// Supervisor startup and footprint:
//   - time from spawning `cloister enclave` to the app's first instruction (median of 20 runs). The app
//     is `date +%s%N`: the first thing it does is read the realtime clock, which the bench compares
//     with the realtime at spawn. A bare `date` spawned by this script gives the floor (fork+exec+date).
//   - RSS of the idle supervisor (VmRSS from /proc/<pid>/status once it has settled, app = sleep).
//   - how fast the app can write its stdout through cloister (pipe -> line joining -> ring -> console).
// Run: npm run build && node --import tsx bench/startup.ts
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const RUNS = 20;
/** The bundle to measure (CLOISTER_CLI=... to compare builds). */
const CLI = process.env.CLOISTER_CLI ?? 'dist/cli.js';
const RSS_RUNS = 3;
const THROUGHPUT_RUNS = 3;
const THROUGHPUT_BYTES = 64 * 1024 * 1024;
const SETTLE_MS = 2000;

function nowNs(): bigint {
  // Realtime with sub-millisecond resolution (Date.now() is whole milliseconds).
  return BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function waitExit(p: ChildProcess): Promise<void> {
  return new Promise((r) => (p.exitCode !== null || p.signalCode !== null ? r() : p.once('exit', () => r())));
}

/** Spawn `cmd`, return ms from spawn to the nanosecond timestamp the app prints first. */
async function timeToApp(cmd: string, args: string[], kill: boolean): Promise<number> {
  const t0 = nowNs();
  const p = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  const stamp = await new Promise<bigint>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no timestamp from ${cmd}`)), 15000);
    p.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /^(\d{19})$/m.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(BigInt(m[1]!));
      }
    });
  });
  if (kill) p.kill('SIGTERM');
  await waitExit(p);
  return Number(stamp - t0) / 1e6;
}

function enclaveArgs(dir: string, app: string[]): string[] {
  return [
    CLI,
    'enclave',
    '--config-dir',
    join(dir, 'conf'),
    '--transport',
    'emulated',
    '--vsock-dir',
    join(dir, 'vsock'),
    '--no-bootstrap',
    '--',
    ...app,
  ];
}

async function waitRunning(dir: string): Promise<void> {
  const path = join(dir, 'vsock', '16', '17000.sock');
  const deadline = Date.now() + 15000;
  while (Date.now() < deadline) {
    const line = await new Promise<string | null>((resolve) => {
      const s = connect(path);
      s.setEncoding('utf8');
      s.once('data', (d: string) => {
        s.destroy();
        resolve(d);
      });
      s.once('error', () => resolve(null));
    });
    if (line?.includes('"running"')) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('cloister never reported running');
}

/**
 * MiB/s the app can write to its stdout: the app stamps the time into files before and after writing
 * THROUGHPUT_BYTES of 80-byte lines, so the figure covers only the writing (cloister drains the pipe into
 * the ring and echoes it on its stdout, which this script reads and discards).
 */
async function outputRate(supervised: boolean): Promise<number> {
  const f1 = join(dir, 't1');
  const f2 = join(dir, 't2');
  rmSync(f1, { force: true });
  rmSync(f2, { force: true });
  const line = 'x'.repeat(79);
  const script = `date +%s%N > ${f1}; yes ${line} | head -c ${THROUGHPUT_BYTES}; date +%s%N > ${f2}`;
  const p = supervised
    ? spawn(process.execPath, enclaveArgs(dir, ['sh', '-c', script]), { stdio: ['ignore', 'pipe', 'ignore'] })
    : spawn('sh', ['-c', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  p.stdout!.resume();
  const deadline = Date.now() + 60000;
  while (!existsSync(f2) || readFileSync(f2, 'utf8').trim() === '') {
    if (Date.now() > deadline) throw new Error('throughput run did not finish');
    await new Promise((r) => setTimeout(r, 20));
  }
  const ns = BigInt(readFileSync(f2, 'utf8').trim()) - BigInt(readFileSync(f1, 'utf8').trim());
  if (supervised) p.kill('SIGTERM');
  await waitExit(p);
  return THROUGHPUT_BYTES / (1024 * 1024) / (Number(ns) / 1e9);
}

function vmRss(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m![1]);
}

const dir = mkdtempSync(join(tmpdir(), 'cloister-bench-startup-'));
mkdirSync(join(dir, 'conf'));
writeFileSync(
  join(dir, 'conf', 'enclaver.yaml'),
  'version: v1\nname: bench\ntarget: bench:latest\nsources:\n  app: bench-app:latest\n',
);
try {
  const bare: number[] = [];
  const supervised: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    bare.push(await timeToApp('date', ['+%s%N'], false));
    supervised.push(await timeToApp(process.execPath, enclaveArgs(dir, ['date', '+%s%N']), true));
  }
  // Node's own start-up (`node -e 0`) and loading the bundle (`cloister --version`), for scale.
  const nodeBare: number[] = [];
  const version: number[] = [];
  for (let i = 0; i < 10; i++) {
    let t0 = performance.now();
    await waitExit(spawn(process.execPath, ['-e', '0'], { stdio: 'ignore' }));
    nodeBare.push(performance.now() - t0);
    t0 = performance.now();
    await waitExit(spawn(process.execPath, [CLI, '--version'], { stdio: 'ignore' }));
    version.push(performance.now() - t0);
  }

  const rss: number[] = [];
  for (let i = 0; i < RSS_RUNS; i++) {
    const p = spawn(process.execPath, enclaveArgs(dir, ['sleep', '1000']), { stdio: 'ignore' });
    await waitRunning(dir);
    await new Promise((r) => setTimeout(r, SETTLE_MS));
    rss.push(vmRss(p.pid!));
    p.kill('SIGTERM');
    await waitExit(p);
  }

  const rateBare: number[] = [];
  const rateSupervised: number[] = [];
  for (let i = 0; i < THROUGHPUT_RUNS; i++) {
    rateBare.push(await outputRate(false));
    rateSupervised.push(await outputRate(true));
  }

  const results = {
    node: process.version,
    cli: CLI,
    runs: RUNS,
    app_first_instruction_ms: {
      cloister_median: median(supervised),
      cloister_min: Math.min(...supervised),
      cloister_max: Math.max(...supervised),
      bare_date_median: median(bare),
      overhead_median: median(supervised) - median(bare),
    },
    cloister_version_exit_ms_median: median(version),
    node_e0_exit_ms_median: median(nodeBare),
    idle_rss_kib: { median: median(rss), runs: rss },
    app_stdout_mib_per_s: { cloister: rateSupervised, bare_pipe: rateBare, bytes: THROUGHPUT_BYTES },
  };
  const f = (x: number) => x.toFixed(1);
  console.log('| measure | median | min | max |');
  console.log('|---|---|---|---|');
  console.log(
    `| spawn -> app first instruction, cloister enclave (ms) | ${f(median(supervised))} | ${f(Math.min(...supervised))} | ${f(Math.max(...supervised))} |`,
  );
  console.log(
    `| spawn -> first instruction, bare \`date\` (ms) | ${f(median(bare))} | ${f(Math.min(...bare))} | ${f(Math.max(...bare))} |`,
  );
  console.log(
    `| \`cloister --version\` spawn to exit (ms) | ${f(median(version))} | ${f(Math.min(...version))} | ${f(Math.max(...version))} |`,
  );
  console.log(
    `| \`node -e 0\` spawn to exit (ms) | ${f(median(nodeBare))} | ${f(Math.min(...nodeBare))} | ${f(Math.max(...nodeBare))} |`,
  );
  console.log(
    `| idle supervisor VmRSS (MiB) | ${f(median(rss) / 1024)} | ${f(Math.min(...rss) / 1024)} | ${f(Math.max(...rss) / 1024)} |`,
  );
  console.log(
    `| app stdout through cloister (MiB/s) | ${f(median(rateSupervised))} | ${f(Math.min(...rateSupervised))} | ${f(Math.max(...rateSupervised))} |`,
  );
  console.log(
    `| app stdout into a bare pipe (MiB/s) | ${f(median(rateBare))} | ${f(Math.min(...rateBare))} | ${f(Math.max(...rateBare))} |`,
  );
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    process.env.CLOISTER_CLI ? 'bench/results/startup-alt.json' : 'bench/results/startup.json',
    `${JSON.stringify(results, null, 2)}\n`,
  );
} finally {
  rmSync(dir, { recursive: true, force: true });
}
