// Benchmarks for the native layer: NSM request round trips through the addon's off-loop ioctl (answered
// by the test LD_PRELOAD shim, so this measures cloister's overhead, not a real NSM), and stream
// throughput over the emulated transport between two processes.
// Run: node --import tsx bench/native.ts   (writes bench/results/native.json)
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openNsmDevice } from '../src/nsm/device.ts';
import { EmulatedTransport } from '../src/transport/emulated.ts';

const GET_RANDOM = Buffer.from('6947657452616e646f6d', 'hex');
const MiB = 1 << 20;

interface Row {
  name: string;
  value: number;
  unit: string;
}

// --- child roles --------------------------------------------------------------------------------

async function nsmChild(): Promise<void> {
  const dev = await openNsmDevice();
  const rows: Row[] = [];
  for (const concurrency of [1, 8]) {
    const n = 4000;
    for (let i = 0; i < 200; i++) await dev.raw(GET_RANDOM); // warm-up
    const t0 = process.hrtime.bigint();
    let next = 0;
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next++ < n) await dev.raw(GET_RANDOM);
      }),
    );
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    rows.push({ name: `NSM GetRandom round trip, concurrency ${concurrency}`, value: n / s, unit: 'req/s' });
    rows.push({
      name: `NSM GetRandom mean latency, concurrency ${concurrency}`,
      value: (s / n) * 1e6 * concurrency,
      unit: 'µs',
    });
  }
  await dev.close();
  console.log(JSON.stringify(rows));
}

async function sendChild(dir: string, port: number, bytes: number): Promise<void> {
  const sock = await new EmulatedTransport(dir, 2).connect(16, port);
  const block = randomBytes(MiB);
  for (let sent = 0; sent < bytes; sent += MiB) {
    const chunk = Buffer.allocUnsafe(MiB);
    block.copy(chunk);
    if (!sock.write(chunk)) await once(sock, 'drain');
  }
  sock.end();
  await once(sock, 'close');
}

// --- parent -------------------------------------------------------------------------------------

function runChild(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<string> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'bench/native.ts', ...args], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`bench child ${args[0]} exited ${code}`);
    return out;
  });
}

async function transportThroughput(streams: number, bytesEach: number, hash: boolean): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-bench-'));
  try {
    const server = await new EmulatedTransport(dir, 16).listen(5000);
    let done = 0;
    const allIn = new Promise<void>((resolve) => {
      server.on('connection', (sock: Socket) => {
        const h = hash ? createHash('sha256') : undefined;
        sock.on('data', (d: Buffer) => h?.update(d));
        sock.on('end', () => {
          h?.digest();
          sock.end();
          if (++done === streams) resolve();
        });
      });
    });
    const t0 = process.hrtime.bigint();
    await Promise.all(
      Array.from({ length: streams }, () => runChild(['send', dir, '5000', String(bytesEach)])),
    );
    await allIn;
    const s = Number(process.hrtime.bigint() - t0) / 1e9;
    server.close();
    return {
      name: `emulated transport, ${streams} stream(s) x ${bytesEach / MiB} MiB${hash ? ', SHA-256 at receiver' : ''} (incl. process start)`,
      value: (streams * bytesEach) / MiB / s,
      unit: 'MiB/s',
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const [role, ...rest] = process.argv.slice(2);
  if (role === 'nsm') return nsmChild();
  if (role === 'send') return sendChild(rest[0]!, Number(rest[1]), Number(rest[2]));

  const rows: Row[] = [];
  const shimDir = mkdtempSync(join(tmpdir(), 'cloister-bench-shim-'));
  try {
    const shim = join(shimDir, 'nsm_shim.so');
    execFileSync('cc', ['-shared', '-fPIC', '-O2', '-o', shim, 'test/helpers/native/nsm_shim.c', '-ldl']);
    rows.push(...(JSON.parse(await runChild(['nsm'], { ...process.env, LD_PRELOAD: shim })) as Row[]));
  } finally {
    rmSync(shimDir, { recursive: true, force: true });
  }
  rows.push(await transportThroughput(1, 1024 * MiB, false));
  rows.push(await transportThroughput(1, 1024 * MiB, true));
  rows.push(await transportThroughput(4, 256 * MiB, false));

  const width = Math.max(...rows.map((r) => r.name.length));
  console.log(`${'benchmark'.padEnd(width)}  value`);
  for (const r of rows) console.log(`${r.name.padEnd(width)}  ${r.value.toFixed(1)} ${r.unit}`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/native.json',
    `${JSON.stringify({ node: process.version, date: new Date().toISOString(), rows }, null, 2)}\n`,
  );
}

await main();
