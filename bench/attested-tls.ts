// Attested TLS: what a handshake costs on the attested ingress port vs a plain TLS ingress port (server CPU,
// measured in the server's own process, bench/attested-tls-server.ts; client CPU, with and without
// verifying the certificate's document; with a client nonce in SNI, which makes the server attest per
// handshake), and what `cloister attest connect` costs as a whole process (CPU from bash's `times`).
// CPU per operation is the number to compare; wall-clock figures are printed too, but are only meaningful
// on a quiet machine.
// Run: node --import tsx bench/attested-tls.ts [--handshakes 300]   (writes bench/results/attested-tls.json)
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { connect as tlsConnect } from 'node:tls';
import { nonceServername } from '../src/attested-tls/sni-nonce.ts';
import { verifyAttestedCertificate } from '../src/attested-tls/verify.ts';
import { cpuUs } from './measure.ts';

const argv = process.argv.slice(2);
const N = Number(argv[argv.indexOf('--handshakes') + 1] ?? 0) || 300;
const CONNECT_RUNS = 5;

interface Row {
  name: string;
  handshakes: number;
  server_cpu_us: number | null;
  client_cpu_us: number | null;
  wall_ms: number | null;
}
const rows: Row[] = [];

const server = spawn(process.execPath, ['--import', 'tsx', 'bench/attested-tls-server.ts'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
const lines = createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
const next = async (): Promise<string> => {
  const r = await lines.next();
  if (r.done) throw new Error('the bench server exited');
  return r.value;
};
const info = JSON.parse(await next()) as {
  plain: number;
  attested: number;
  rootPem: string;
  pcr0: string;
  certificateBytes: { plain: number; attested: number };
};
// The server's utime + stime from /proc (10 ms ticks: a run of a few hundred handshakes spans many).
const serverCpu = (): number => cpuUs(server.pid!);

/** One full handshake (no session reuse); resolves with the server's certificate (DER). */
function handshake(port: number, servername?: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, rejectUnauthorized: false }, () => {
      const raw = s.getPeerCertificate().raw;
      s.destroy();
      resolve(raw);
    });
    s.on('error', reject);
  });
}

async function measure(name: string, n: number, one: () => Promise<unknown>): Promise<void> {
  for (let i = 0; i < 10; i++) await one(); // warm-up: code paths, verifier caches
  const s0 = serverCpu();
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await one();
  const wall = performance.now() - t0;
  const c = process.cpuUsage(c0);
  const s1 = serverCpu();
  rows.push({
    name,
    handshakes: n,
    server_cpu_us: (s1 - s0) / n,
    client_cpu_us: (c.user + c.system) / n,
    wall_ms: wall / n,
  });
}

const policy = { rootPem: info.rootPem, pcrs: { 0: info.pcr0 }, maxAgeMs: 600_000 };
await measure('plain TLS ingress (P-256, self-signed), client does not verify', N, () =>
  handshake(info.plain),
);
await measure('attested TLS ingress, client does not verify', N, () => handshake(info.attested));
await measure('attested TLS ingress, client verifies (verifyAttestedCertificate)', N, async () =>
  verifyAttestedCertificate(await handshake(info.attested), policy),
);
await measure(
  'attested TLS ingress, nonce in SNI (server attests per handshake), client verifies',
  Math.ceil(N / 3),
  async () => {
    const nonce = randomBytes(16);
    return verifyAttestedCertificate(await handshake(info.attested, nonceServername(nonce)), {
      ...policy,
      nonce,
    });
  },
);

// `cloister attest connect` as a user runs it: a whole process (start-up, connect, verify, print).
if (!existsSync('dist/cli.js')) execFileSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
const tmp = mkdtempSync(join(tmpdir(), 'cloister-bench-atls-'));
try {
  const root = join(tmp, 'root.pem');
  writeFileSync(root, info.rootPem);
  const cmd = (extra: string) =>
    `node dist/cli.js attest connect 127.0.0.1:${info.attested} --root ${root} --pcr 0=${info.pcr0} --max-age 10m ${extra} >/dev/null`;
  for (const [name, extra] of [
    ['`cloister attest connect` (whole process)', ''],
    ['`cloister attest connect --fresh` (whole process)', '--fresh'],
  ] as const) {
    execFileSync('bash', ['-c', cmd(extra)]); // warm the page cache
    const walls: number[] = [];
    let cpu = 0;
    for (let i = 0; i < CONNECT_RUNS; i++) {
      const t0 = performance.now();
      // bash's `times`: the second line is the children's user and system time.
      const out = execFileSync('bash', ['-c', `${cmd(extra)}; times`], { encoding: 'utf8' });
      walls.push(performance.now() - t0);
      const child = out.trim().split('\n').at(-1)!;
      const secs = [...child.matchAll(/(\d+)m([\d.]+)s/g)].map((m) => Number(m[1]) * 60 + Number(m[2]));
      cpu += (secs[0] ?? 0) + (secs[1] ?? 0);
    }
    walls.sort((a, b) => a - b);
    rows.push({
      name,
      handshakes: CONNECT_RUNS,
      server_cpu_us: null,
      client_cpu_us: (cpu / CONNECT_RUNS) * 1e6,
      wall_ms: walls[Math.floor(walls.length / 2)]!,
    });
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
  server.kill();
}

const fmt = (v: number | null, d = 0) => (v === null ? '-' : v.toFixed(d));
console.log(
  `certificate size: plain ${info.certificateBytes.plain} B, attested ${info.certificateBytes.attested} B`,
);
console.log(
  `${'case'.padEnd(92)} ${'n'.padStart(5)} ${'server CPU µs'.padStart(14)} ${'client CPU µs'.padStart(14)} ${'wall ms'.padStart(8)}`,
);
for (const r of rows) {
  console.log(
    `${r.name.padEnd(92)} ${String(r.handshakes).padStart(5)} ${fmt(r.server_cpu_us).padStart(14)} ${fmt(r.client_cpu_us).padStart(14)} ${fmt(r.wall_ms, 2).padStart(8)}`,
  );
}
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/attested-tls.json',
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, certificateBytes: info.certificateBytes, rows }, null, 2)}\n`,
);
