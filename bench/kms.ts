// KMS proxy benchmark: Decrypt through the whole path
//   SDK -> KMS proxy -> egress proxy -> emulated vsock -> egress relay -> KMS emulator
// against the SDK straight to the emulator, at concurrency 1 and 16, in one run; plus the proxy's own
// cost per call from its Server-Timing header (NSM attestation, RSA/CMS decrypt, signing, upstream, and
// `total` = the proxy's whole handling; the client's p50 minus that is the SDK's own work and the hop).
// `direct+R` sends the same Decrypt straight to the emulator with a Recipient (one pre-made document):
// the share of "upstream" that is KMS's own work on attested calls (document verification, CMS).
// Run: node --import tsx bench/kms.ts [seconds-per-case]
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateKeyCommand, DecryptCommand, EncryptCommand, type KMSClient } from '@aws-sdk/client-kms';
import { startHarness } from '../test/helpers/kms-harness.ts';

const SECONDS = Number(process.argv[2] ?? 4);
const PHASES = ['nsm', 'rsa', 'sign', 'upstream', 'total'] as const;

function quantile(sorted: number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Records the proxy's Server-Timing phases of every response. */
function recordTimings(client: KMSClient, sink: Array<Record<string, number>>): void {
  client.middlewareStack.add(
    (next) => async (args) => {
      const out = await next(args);
      const header = (out.response as { headers?: Record<string, string> }).headers?.['server-timing'];
      if (header) {
        const phases: Record<string, number> = {};
        for (const part of header.split(',')) {
          const m = /^\s*(\w+);dur=([\d.]+)/.exec(part);
          if (m) phases[m[1]!] = Number(m[2]);
        }
        sink.push(phases);
      }
      return out;
    },
    { step: 'deserialize', name: 'serverTiming' },
  );
}

async function runCase(
  client: KMSClient,
  blob: Uint8Array,
  concurrency: number,
  seconds: number,
  recipient?: { AttestationDocument: Uint8Array; KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' },
) {
  const latencies: number[] = [];
  let errors = 0;
  const cmd = () => new DecryptCommand({ CiphertextBlob: blob, Recipient: recipient });
  // Warm-up: connections, JIT.
  await Promise.all(Array.from({ length: concurrency }, () => client.send(cmd())));
  const end = performance.now() + seconds * 1000;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < end) {
        const t = performance.now();
        try {
          await client.send(cmd());
          latencies.push(performance.now() - t);
        } catch {
          errors++;
        }
      }
    }),
  );
  const elapsed = (performance.now() - started) / 1000;
  latencies.sort((a, b) => a - b);
  return {
    concurrency,
    calls: latencies.length,
    errors,
    callsPerSecond: latencies.length / elapsed,
    p50Ms: quantile(latencies, 0.5),
    p99Ms: quantile(latencies, 0.99),
  };
}

const h = await startHarness();
try {
  const keyId = (await h.direct.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  const blob = (await h.direct.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(32, 7) })))
    .CiphertextBlob!;
  const timings: Array<Record<string, number>> = [];
  recordTimings(h.viaProxy, timings);
  // What KMS (here: the emulator) spends on a Recipient: verify the document, build the CMS reply.
  const spki = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
    type: 'spki',
    format: 'der',
  });
  const recipient = {
    AttestationDocument: await h.nsm.attestation({ public_key: spki }),
    KeyEncryptionAlgorithm: 'RSAES_OAEP_SHA_256' as const,
  };
  const results = [];
  for (const concurrency of [1, 16]) {
    results.push({ path: 'direct', ...(await runCase(h.direct, blob, concurrency, SECONDS)) });
    results.push({ path: 'direct+R', ...(await runCase(h.direct, blob, concurrency, SECONDS, recipient)) });
    timings.length = 0;
    const r = await runCase(h.viaProxy, blob, concurrency, SECONDS);
    const phases: Record<string, { p50Ms: number; p99Ms: number }> = {};
    for (const p of PHASES) {
      const xs = timings
        .map((t) => t[p])
        .filter((x): x is number => x !== undefined)
        .sort((a, b) => a - b);
      phases[p] = { p50Ms: quantile(xs, 0.5), p99Ms: quantile(xs, 0.99) };
    }
    results.push({ path: 'proxy', ...r, phases });
  }
  const f = (x: number) => x.toFixed(2);
  console.log(`Decrypt, ${SECONDS} s per case (Node ${process.version}, software NSM, emulated vsock)\n`);
  console.log('path    conc  calls/s   p50 ms   p99 ms   errors');
  for (const r of results) {
    console.log(
      `${r.path.padEnd(7)} ${String(r.concurrency).padStart(4)} ${f(r.callsPerSecond).padStart(8)} ${f(r.p50Ms).padStart(8)} ${f(r.p99Ms).padStart(8)} ${String(r.errors).padStart(8)}`,
    );
  }
  console.log('\nproxy phases (p50 / p99 ms)');
  console.log('conc       nsm            rsa           sign       upstream          total');
  for (const r of results) {
    if (!('phases' in r) || !r.phases) continue;
    const cells = PHASES.map((p) => `${f(r.phases[p]!.p50Ms)} / ${f(r.phases[p]!.p99Ms)}`.padStart(14));
    console.log(`${String(r.concurrency).padStart(4)} ${cells.join(' ')}`);
  }
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(
    join(import.meta.dirname, 'results', 'kms.json'),
    `${JSON.stringify({ date: new Date().toISOString(), node: process.version, secondsPerCase: SECONDS, results }, null, 2)}\n`,
  );
} finally {
  await h.close();
}
