// Egress benchmark: the full path (client -> proxy process -> emulated vsock -> relay process ->
// server) against the same transfer direct on loopback and through tinyproxy as a one-hop CONNECT
// proxy. Every byte stays on loopback. Run: node --import tsx bench/egress.ts [--mib 1024] [--runs 2]
//
// Before/after in one invocation: `--before <tree>` adds a "cloister-before" path whose proxy and relay
// run from another checkout (its bench/egress-side.ts, src/ and built addon; `bench/before-tree.sh` makes
// one from a commit). BENCH_EGRESS_PATHS=direct,cloister,cloister-before picks the rows.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { writeBlocks } from '../test/helpers/fixtures/bulk.ts';
import { cpuUs, gbit, pct } from './measure.ts';

const { values } = parseArgs({
  options: {
    mib: { type: 'string', default: '1024' },
    runs: { type: 'string', default: '2' },
    before: { type: 'string' },
  },
});
const MIB = Number(values.mib);
const RUNS = Number(values.runs);
const here = import.meta.dirname;
const tmp = mkdtempSync(join(tmpdir(), 'cloister-bench-egress-'));
const children: ChildProcess[] = [];
const cleanup = () => {
  for (const c of children) c.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
};
process.on('exit', cleanup);

function listen(s: Server): Promise<number> {
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r((s.address() as { port: number }).port)));
}

// Servers: source sends MIB MiB then FIN; sink swallows until FIN; echo answers.
const block = Buffer.alloc(1024 * 1024, 1);
const source = await listen(
  createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.resume();
    writeBlocks(s, block, MIB);
  }),
);
const sink = await listen(
  createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.on('end', () => s.end());
    s.resume();
  }),
);
const echo = await listen(
  createServer({ allowHalfOpen: true }, (s) => {
    s.on('error', () => {});
    s.pipe(s);
  }),
);

function start(cmd: string, args: string[]): Promise<{ child: ChildProcess; line: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    children.push(child);
    child.stdout!.once('data', (d) => resolve({ child, line: String(d).trim() }));
    child.once('exit', (code) => reject(new Error(`${cmd} exited ${code}`)));
  });
}

const node = [process.execPath, '--import', 'tsx'];
/** A relay and proxy process pair from `tree` (this checkout or a before tree), on its own vsock dir. */
async function startPair(tree: string, name: string) {
  const vsockDir = join(tmp, `vsock-${name}`);
  mkdirSync(vsockDir);
  const side = join(tree, 'bench', 'egress-side.ts');
  const relay = await start(node[0]!, [...node.slice(1), side, 'relay', vsockDir]);
  const proxy = await start(node[0]!, [...node.slice(1), side, 'proxy', vsockDir, '127.0.0.1']);
  return { relay, proxy, addr: `127.0.0.1:${proxy.line}` };
}
const pairs: Record<string, Awaited<ReturnType<typeof startPair>>> = {
  cloister: await startPair(join(here, '..'), 'cloister'),
};
if (values.before) pairs['cloister-before'] = await startPair(values.before, 'before');
const { proxy, relay } = pairs.cloister!;
const cloisterAddr = pairs.cloister!.addr;

// tinyproxy on a loopback port with a temp config (no ConnectPort lines: CONNECT to any port).
const probe = createServer();
const tinyPort = await listen(probe);
await new Promise((r) => probe.close(r)); // a free port, released for tinyproxy
const tinyConf = join(tmp, 'tinyproxy.conf');
writeFileSync(
  tinyConf,
  `Port ${tinyPort}\nListen 127.0.0.1\nTimeout 600\nMaxClients 2000\nAllow 127.0.0.1\nLogLevel Critical\nPidFile "${join(tmp, 'tp.pid')}"\n`,
);
const tiny = spawn('tinyproxy', ['-d', '-c', tinyConf], { stdio: 'ignore' });
children.push(tiny);
const tinyAddr = `127.0.0.1:${tinyPort}`;
for (let i = 0; i < 50; i++) {
  const ok = await new Promise<boolean>((r) => {
    const s = connect(tinyPort, '127.0.0.1', () => {
      s.destroy();
      r(true);
    }).on('error', () => r(false));
  });
  if (ok) break;
  await new Promise((r) => setTimeout(r, 100));
}

interface ClientOut {
  bytes: number;
  seconds: number;
  ms: number[];
  tunnels: number;
}
interface PathResult {
  down_gbit: number;
  up_gbit: number;
  connect_p50_ms: number;
  connect_p99_ms: number;
  tunnels_per_s: number | null;
  /** CPU (user + system) the proxy and relay processes spent per tunnel during the rate run. */
  cloister_cpu_us_per_tunnel: { proxy: number; relay: number } | null;
}

function client(args: string[], input?: string): Promise<ClientOut> {
  return new Promise((resolve, reject) => {
    const c = spawn(node[0]!, [...node.slice(1), join(here, 'egress-client.ts'), ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`client ${args} -> ${code}`)),
    );
    c.stdin.end(input ?? '');
  });
}

const only = process.env.BENCH_EGRESS_PATHS?.split(',');
const paths = (
  [['direct', '-'], ['tinyproxy', tinyAddr], ...Object.entries(pairs).map(([name, p]) => [name, p.addr])] as [
    string,
    string,
  ][]
).filter(([name]) => !only || only.includes(name));
const best = async (args: string[]) => {
  let top = 0;
  for (let i = 0; i < RUNS; i++) {
    // One retry: on a machine this loaded a run can lose its peer (tinyproxy drops slow clients).
    const r = await client(args).catch((e) => {
      console.error(`retrying after: ${e.message}`);
      return client(args);
    });
    top = Math.max(top, gbit(r));
  }
  return top;
};
const results = {
  mib: MIB,
  runs: RUNS,
  node: process.version,
  paths: {} as Record<string, PathResult>,
  rss_mib: {} as Record<string, Record<string, number>>,
  table: [] as Record<string, string>[],
};
// RSS of the fresh proxy and relay processes, then with 1000 tunnels open (first, before other load grows the heaps).
const rss = (pid: number) =>
  Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;
const before = { proxy: rss(proxy.child.pid!), relay: rss(relay.child.pid!) };
const holder = spawn(
  node[0]!,
  [...node.slice(1), join(here, 'egress-client.ts'), 'hold', cloisterAddr, `127.0.0.1:${echo}`, '1000'],
  {
    stdio: ['pipe', 'pipe', 'inherit'],
  },
);
// A holder that dies before it prints (a refused tunnel) must fail the run, not hang it.
await new Promise((resolve, reject) => {
  holder.stdout.once('data', resolve);
  holder.once('exit', (code) =>
    reject(new Error(`the 1000-tunnel holder exited (${code}) before opening them`)),
  );
});
await new Promise((r) => setTimeout(r, 500));
const during = { proxy: rss(proxy.child.pid!), relay: rss(relay.child.pid!) };
holder.stdin.end();
results.rss_mib = { idle: before, with_1000_tunnels: during };

for (const [name, addr] of paths) {
  const down = await best(['down', addr, `127.0.0.1:${source}`]);
  const up = await best(['up', addr, `127.0.0.1:${sink}`, String(MIB)]);
  const lat = (await client(['latency', addr, `127.0.0.1:${echo}`, '1000'])).ms.slice(100);
  const pair = pairs[name];
  const cpu0 = pair ? [cpuUs(pair.proxy.child.pid!), cpuUs(pair.relay.child.pid!)] : null;
  const rate = name === 'direct' ? null : await client(['rate', addr, `127.0.0.1:${echo}`, '4', '16']);
  const cpu =
    pair && cpu0 && rate
      ? {
          proxy: (cpuUs(pair.proxy.child.pid!) - cpu0[0]!) / rate.tunnels,
          relay: (cpuUs(pair.relay.child.pid!) - cpu0[1]!) / rate.tunnels,
        }
      : null;
  results.paths[name] = {
    down_gbit: down,
    up_gbit: up,
    connect_p50_ms: pct(lat, 50),
    connect_p99_ms: pct(lat, 99),
    tunnels_per_s: rate ? rate.tunnels / rate.seconds : null,
    cloister_cpu_us_per_tunnel: cpu,
  };
}

const d = results.paths.direct ?? Object.values(results.paths)[0]!;
const rows = Object.entries(results.paths).map(([name, r]) => ({
  path: name,
  'down Gbit/s': r.down_gbit.toFixed(2),
  'down % direct': `${((100 * r.down_gbit) / d.down_gbit).toFixed(0)}%`,
  'up Gbit/s': r.up_gbit.toFixed(2),
  'up % direct': `${((100 * r.up_gbit) / d.up_gbit).toFixed(0)}%`,
  'connect p50 ms': r.connect_p50_ms.toFixed(3),
  'connect p99 ms': r.connect_p99_ms.toFixed(3),
  '+p50 vs direct ms': (r.connect_p50_ms - d.connect_p50_ms).toFixed(3),
  'tunnels/s': r.tunnels_per_s ? r.tunnels_per_s.toFixed(0) : '-',
  'CPU µs/tunnel proxy+relay': r.cloister_cpu_us_per_tunnel
    ? `${r.cloister_cpu_us_per_tunnel.proxy.toFixed(0)}+${r.cloister_cpu_us_per_tunnel.relay.toFixed(0)}`
    : '-',
}));
console.table(rows);
console.log(
  `RSS MiB idle proxy ${before.proxy.toFixed(1)} relay ${before.relay.toFixed(1)}; ` +
    `with 1000 tunnels proxy ${during.proxy.toFixed(1)} relay ${during.relay.toFixed(1)}`,
);
results.table = rows;
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', 'egress.json'), `${JSON.stringify(results, null, 2)}\n`);
cleanup();
process.exit(0);
