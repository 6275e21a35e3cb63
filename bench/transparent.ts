// Transparent egress benchmark (docs/transparent-egress.md), as root, in network namespaces it makes:
//
//   [netns A: client, egress proxy + transparent listener + DNS stub (its route and nat rules)]
//      --emulated vsock-->  [netns B: relay; servers on 10.77.0.1 (source 9001, sink 9002, echo 9003)]
//
// Three ways to the same servers, in one run: direct (a client in B), CONNECT (a client in A through
// the proxy), transparent (a client in A dialling 10.77.0.1 with no proxy: redirected). Per path: bulk
// down/up (Gbit/s), connection setup (p50/p99 of a fresh connection and a 1-byte echo), and the CPU the
// enclave process and the relay spend per connection under a connection-rate load. Then the DNS stub:
// answers per second (a window of queries in flight) and the enclave's CPU per answer, for an allowed
// cached name and a refused one. Nothing leaves the machine: neither namespace has any device but lo.
// Run: node --import tsx bench/transparent.ts [--mib 1024] [--runs 2]
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { cpuUs, gbit, pct } from './measure.ts';

const { values } = parseArgs({
  options: { mib: { type: 'string', default: '1024' }, runs: { type: 'string', default: '2' } },
});
const MIB = Number(values.mib);
const RUNS = Number(values.runs);
const SERVER = '10.77.0.1';
const PORTS = { source: 9001, sink: 9002, echo: 9003 };
if (process.getuid?.() !== 0) {
  console.error('bench/transparent.ts needs root (network namespaces, iptables nat rules)');
  process.exit(2);
}

const here = import.meta.dirname;
const tmp = mkdtempSync(join(tmpdir(), 'cloister-bench-transparent-'));
const children: ChildProcess[] = [];
const cleanup = () => {
  for (const c of children) c.kill('SIGTERM');
  rmSync(tmp, { recursive: true, force: true });
};
process.on('exit', cleanup);
const node = [process.execPath, '--import', 'tsx'];
const side = join(here, 'transparent-side.ts');

function start(
  cmd: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ child: ChildProcess; line: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
    children.push(child);
    child.stdout!.once('data', (d) => resolve({ child, line: String(d).trim() }));
    child.once('exit', (code) => reject(new Error(`${cmd} ${args.join(' ')} exited ${code}`)));
  });
}
const inNs = (pid: number) => ['nsenter', `--net=/proc/${pid}/ns/net`];

const vsockDir = join(tmp, 'vsock');
mkdirSync(vsockDir);
writeFileSync(join(tmp, 'resolv.conf'), 'nameserver 192.0.2.99\n');
const servers = await start('unshare', ['-n', ...node, side, 'servers'], { BENCH_MIB: String(MIB) });
const relay = await start(inNs(servers.child.pid!)[0]!, [
  ...inNs(servers.child.pid!).slice(1),
  ...node,
  side,
  'relay',
  vsockDir,
]);
// The enclave side gets its own mount namespace too: its resolv.conf is a bind mount of a temp file.
const enclave = await start('unshare', [
  '-n',
  '-m',
  '--propagation',
  'private',
  'sh',
  '-c',
  `mount --bind ${join(tmp, 'resolv.conf')} /etc/resolv.conf && exec ${node.join(' ')} ${side} enclave ${vsockDir}`,
]);
const proxyAddr = `127.0.0.1:${enclave.line}`;

interface ClientOut {
  bytes: number;
  seconds: number;
  ms: number[];
  tunnels: number;
  answers: number;
  rcode: string;
}
function client(ns: number, args: string[]): Promise<ClientOut> {
  return new Promise((resolve, reject) => {
    const c = spawn(inNs(ns)[0]!, [...inNs(ns).slice(1), ...node, ...args], {
      stdio: ['pipe', 'pipe', 'inherit'],
    });
    let out = '';
    c.stdout.on('data', (d) => {
      out += d;
    });
    c.on('exit', (code) =>
      code === 0 ? resolve(JSON.parse(out)) : reject(new Error(`client ${args} -> ${code}`)),
    );
    c.stdin.end('');
  });
}
const egressClient = (ns: number, args: string[]) => client(ns, [join(here, 'egress-client.ts'), ...args]);

// The enclave process is `sh -c exec node ...`: after exec it is the node process itself.
const enclavePid = enclave.child.pid!;
const relayPid = relay.child.pid!;
const target = (port: number) => `${SERVER}:${port}`;
const paths: [string, number, string][] = [
  ['direct', servers.child.pid!, '-'],
  ['CONNECT', enclavePid, proxyAddr],
  ['transparent', enclavePid, '-'],
];
const results = {
  mib: MIB,
  runs: RUNS,
  node: process.version,
  paths: {} as Record<string, unknown>,
  dns: {} as Record<string, unknown>,
  table: [] as Record<string, string>[],
  dnsTable: [] as Record<string, string>[],
};
for (const [name, ns, via] of paths) {
  let down = 0;
  let up = 0;
  for (let i = 0; i < RUNS; i++) {
    down = Math.max(down, gbit(await egressClient(ns, ['down', via, target(PORTS.source)])));
    up = Math.max(up, gbit(await egressClient(ns, ['up', via, target(PORTS.sink), String(MIB)])));
  }
  const lat = (await egressClient(ns, ['latency', via, target(PORTS.echo), '600'])).ms.slice(100);
  let cpu: { enclave: number; relay: number } | null = null;
  let perS: number | null = null;
  if (name !== 'direct') {
    const c0 = [cpuUs(enclavePid), cpuUs(relayPid)];
    const rate = await egressClient(ns, ['rate', via, target(PORTS.echo), '4', '16']);
    cpu = {
      enclave: (cpuUs(enclavePid) - c0[0]!) / rate.tunnels,
      relay: (cpuUs(relayPid) - c0[1]!) / rate.tunnels,
    };
    perS = rate.tunnels / rate.seconds;
  }
  results.paths[name] = {
    down_gbit: down,
    up_gbit: up,
    connect_p50_ms: pct(lat, 50),
    connect_p99_ms: pct(lat, 99),
    conns_per_s: perS,
    cpu_us_per_conn: cpu,
  };
}
const direct = results.paths.direct as { down_gbit: number; up_gbit: number; connect_p50_ms: number };
results.table = Object.entries(results.paths).map(([name, v]) => {
  const r = v as {
    down_gbit: number;
    up_gbit: number;
    connect_p50_ms: number;
    connect_p99_ms: number;
    conns_per_s: number | null;
    cpu_us_per_conn: { enclave: number; relay: number } | null;
  };
  return {
    path: name,
    'down Gbit/s': r.down_gbit.toFixed(2),
    'up Gbit/s': r.up_gbit.toFixed(2),
    'down % direct': `${((100 * r.down_gbit) / direct.down_gbit).toFixed(0)}%`,
    'connect p50 ms': r.connect_p50_ms.toFixed(3),
    'connect p99 ms': r.connect_p99_ms.toFixed(3),
    '+p50 vs direct ms': (r.connect_p50_ms - direct.connect_p50_ms).toFixed(3),
    'conns/s': r.conns_per_s ? r.conns_per_s.toFixed(0) : '-',
    'CPU µs/conn enclave+relay': r.cpu_us_per_conn
      ? `${r.cpu_us_per_conn.enclave.toFixed(0)}+${r.cpu_us_per_conn.relay.toFixed(0)}`
      : '-',
  };
});
console.table(results.table);

// DNS stub: a cached allowed name, then a refused one (the stub alone: the relay is asked once).
await client(enclavePid, [side, 'dns', '1', '1', 'bench.test']);
for (const [label, name] of [
  ['allowed (cached)', 'bench.test'],
  ['refused', 'denied.example'],
] as const) {
  const c0 = cpuUs(enclavePid);
  const r = await client(enclavePid, [side, 'dns', '4', '64', name]);
  const cpu = (cpuUs(enclavePid) - c0) / r.answers;
  results.dns[label] = {
    answers_per_s: r.answers / r.seconds,
    enclave_cpu_us_per_answer: cpu,
    rcode: r.rcode,
  };
  results.dnsTable.push({
    query: label,
    rcode: r.rcode,
    'answers/s': (r.answers / r.seconds).toFixed(0),
    'enclave CPU µs/answer': cpu.toFixed(1),
  });
}
console.table(results.dnsTable);
mkdirSync(join(here, 'results'), { recursive: true });
writeFileSync(join(here, 'results', 'transparent.json'), `${JSON.stringify(results, null, 2)}\n`);
cleanup();
process.exit(0);
