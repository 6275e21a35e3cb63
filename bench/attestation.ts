// Attestation benchmarks: documents per second from the software NSM (through the CBOR client),
// verifications per second (cold: nothing cached; warm: CA path already validated), and attestation
// API requests per second driven by wrk over loopback.
// Run: node --import tsx bench/attestation.ts   (writes bench/results/attestation.json)
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startApiServer } from '../src/api/server.ts';
import { clearVerifierCaches, verifyAttestation } from '../src/attestation/verify.ts';
import { createLogger } from '../src/log/logger.ts';
import { SoftwareNsm } from '../src/nsm/software.ts';

interface Row {
  name: string;
  value: number;
  unit: string;
}

const rows: Row[] = [];
const VECTOR = new URL('../test/vectors/blocky_nitro_attestation.cbor', import.meta.url);

/** Run `fn` repeatedly for about `ms` (after a short warm-up); returns operations per second. */
async function rate(ms: number, fn: (i: number) => Promise<unknown>): Promise<number> {
  for (let i = 0; i < 20; i++) await fn(i);
  let n = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < ms) await fn(n++);
  return n / ((performance.now() - t0) / 1000);
}

const sw = await SoftwareNsm.open({ stateDir: null, pcrs: { '0': 'ab'.repeat(48) } });
const nsm = sw.client();
const nonce = Buffer.alloc(32, 1);

rows.push({
  name: 'software NSM: attestation documents (32-byte nonce), 1 caller',
  value: await rate(3000, () => nsm.attestation({ nonce })),
  unit: 'doc/s',
});
const big = Buffer.alloc(1024, 2);
rows.push({
  name: 'software NSM: documents with 3 x 1024-byte fields',
  value: await rate(2000, () => nsm.attestation({ nonce: big, user_data: big, public_key: big })),
  unit: 'doc/s',
});
rows.push({ name: 'software NSM: GetRandom', value: await rate(1000, () => nsm.getRandom()), unit: 'req/s' });

const awsDoc = readFileSync(VECTOR);
const swDocs = await Promise.all(
  Array.from({ length: 64 }, (_, i) => nsm.attestation({ nonce: Buffer.from([i]) })),
);
rows.push({
  name: 'verify AWS document, cold (caches cleared each time)',
  value: await rate(3000, () => {
    clearVerifierCaches();
    return verifyAttestation(awsDoc, { at: 'timestamp' });
  }),
  unit: 'verify/s',
});
rows.push({
  name: 'verify AWS document, warm (CA path validated before)',
  value: await rate(3000, () => verifyAttestation(awsDoc, { at: 'timestamp' })),
  unit: 'verify/s',
});
rows.push({
  name: 'verify distinct software NSM documents, same chain',
  value: await rate(3000, (i) => verifyAttestation(swDocs[i % swDocs.length]!, { rootPem: sw.rootPem })),
  unit: 'verify/s',
});

// API: a real server on loopback, wrk as the client (GET form and odyn's POST form).
const api = await startApiServer({ port: 0 }, { logger: createLogger({ level: 'silent' }), nsm });
const dir = mkdtempSync(join(tmpdir(), 'cloister-bench-att-'));
try {
  const url = `http://127.0.0.1:${api.port}/v1/attestation`;
  const script = join(dir, 'post.lua');
  writeFileSync(
    script,
    `wrk.method = "POST"\nwrk.body = '{"nonce":"${nonce.toString('base64')}"}'\nwrk.headers["Content-Type"] = "application/json"\n`,
  );
  // Asynchronously: the server runs in this process and must keep answering while wrk runs.
  const wrk = async (args: string[]): Promise<number> => {
    const { stdout: out } = await promisify(execFile)('wrk', ['-t1', '-c8', '-d5s', ...args], {
      encoding: 'utf8',
      timeout: 60_000,
    });
    const m = /Requests\/sec:\s+([\d.]+)/.exec(out);
    if (!m) throw new Error(`cannot read wrk output:\n${out}`);
    if (/Non-2xx/.test(out)) throw new Error(`wrk saw errors:\n${out}`);
    return Number(m[1]);
  };
  rows.push({
    name: 'API GET /v1/attestation?nonce=..., wrk 8 connections',
    value: await wrk([`${url}?nonce=${nonce.toString('hex')}`]),
    unit: 'req/s',
  });
  rows.push({
    name: 'API POST /v1/attestation (JSON, base64 nonce), wrk 8 connections',
    value: await wrk(['-s', script, url]),
    unit: 'req/s',
  });
} finally {
  await api.close();
  rmSync(dir, { recursive: true, force: true });
}

const width = Math.max(...rows.map((r) => r.name.length));
for (const r of rows) console.log(`${r.name.padEnd(width)}  ${r.value.toFixed(0).padStart(8)} ${r.unit}`);
mkdirSync(new URL('./results/', import.meta.url), { recursive: true });
writeFileSync(
  new URL('./results/attestation.json', import.meta.url),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, rows }, null, 2)}\n`,
);
