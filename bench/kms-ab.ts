// KMS proxy A/B in one process: this checkout's proxy and another checkout's (e.g. a worktree at the commit
// before a change), side by side on the same egress path, emulator and software NSM, taking turns in
// 0.5 s blocks so that load from elsewhere on the machine falls on both alike. Decrypt of a 32-byte
// secret through each, at concurrency 1 and 16.
// Run: node --import tsx bench/kms-ab.ts <other checkout> [seconds per case]
//   the other checkout needs its own node_modules (its proxy is loaded from its src/).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CreateKeyCommand, DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import type { Service } from '../src/service.ts';
import { REGION, startHarness } from '../test/helpers/kms-harness.ts';

const otherDir = process.argv[2];
if (!otherDir) {
  console.error('usage: node --import tsx bench/kms-ab.ts <other checkout> [seconds per case]');
  process.exit(2);
}
const SECONDS = Number(process.argv[3] ?? 6);
const BLOCK_MS = 500;

function quantile(sorted: number[], q: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : Number.NaN;
}

const h = await startHarness();
const closers: Array<() => Promise<unknown>> = [() => h.close()];
try {
  // The other checkout's proxy, started as that code expects: `startKmsProxy(plan slice, deps)` since the
  // service contract (src/service.ts); before it, `startKmsProxy(ctx, opts)`, where older code read the
  // egress proxy's port from the manifest and newer code took it as an option (both are given).
  const other = (await import(pathToFileURL(resolve(otherDir, 'src/kms/proxy.ts')).href)) as {
    startKmsProxy: (a: unknown, b: unknown) => Promise<Service>;
  };
  const { config } = h;
  const manifest = h.egress
    ? { ...config.manifest, egress: { ...config.manifest.egress, proxy_port: h.egress.port } }
    : config.manifest;
  const otherTakesSlice = await import(pathToFileURL(resolve(otherDir, 'src/service.ts')).href).then(
    (m: Record<string, unknown>) => 'serviceLifetime' in m,
  );
  const otherProxy = otherTakesSlice
    ? await other.startKmsProxy(h.kmsPlan, {
        logger: h.logger,
        nsm: h.nsm,
        egress: h.egress,
        credentials: { env: h.proxyEnv },
      })
    : await other.startKmsProxy(
        { config: { ...config, manifest }, transport: null, logger: h.logger, nsm: h.nsm },
        { port: 0, egress: h.egress, credentials: { env: h.proxyEnv } },
      );
  closers.push(() => otherProxy.close());
  const otherClient = new KMSClient({
    region: REGION,
    endpoint: otherProxy.env!.AWS_KMS_ENDPOINT!,
    credentials: { accessKeyId: 'anything', secretAccessKey: 'anything' },
    maxAttempts: 1,
  });
  closers.push(async () => otherClient.destroy());

  const keyId = (await h.direct.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  const blob = (await h.direct.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(32, 7) })))
    .CiphertextBlob!;
  const sides = [
    { name: `other (${otherDir})`, client: otherClient },
    { name: 'this checkout', client: h.viaProxy },
  ];
  const rows = [];
  for (const concurrency of [1, 16]) {
    const lat = sides.map(() => [] as number[]);
    const busyMs = sides.map(() => 0);
    let errors = 0;
    for (const s of sides)
      await Promise.all(
        Array.from({ length: concurrency }, () =>
          s.client.send(new DecryptCommand({ CiphertextBlob: blob })),
        ),
      );
    const blocks = Math.max(2, Math.round((SECONDS * 1000) / BLOCK_MS / 2) * 2);
    for (let b = 0; b < blocks; b++) {
      const i = b % 2;
      const end = performance.now() + BLOCK_MS;
      const t0 = performance.now();
      await Promise.all(
        Array.from({ length: concurrency }, async () => {
          while (performance.now() < end) {
            const t = performance.now();
            try {
              await sides[i]!.client.send(new DecryptCommand({ CiphertextBlob: blob }));
              lat[i]!.push(performance.now() - t);
            } catch {
              errors++;
            }
          }
        }),
      );
      busyMs[i]! += performance.now() - t0;
    }
    for (const [i, s] of sides.entries()) {
      const xs = lat[i]!.sort((a, b) => a - b);
      rows.push({
        side: s.name,
        concurrency,
        calls: xs.length,
        callsPerSecond: xs.length / (busyMs[i]! / 1000),
        p50Ms: quantile(xs, 0.5),
        p99Ms: quantile(xs, 0.99),
        errors,
      });
    }
  }
  const f = (x: number) => x.toFixed(2);
  console.log(
    `Decrypt through the KMS proxy, A/B in ${BLOCK_MS} ms blocks, ${SECONDS} s per case (Node ${process.version})\n`,
  );
  console.log('| Proxy | Concurrency | calls/s | p50 ms | p99 ms |\n|---|---|---|---|---|');
  for (const r of rows)
    console.log(`| ${r.side} | ${r.concurrency} | ${f(r.callsPerSecond)} | ${f(r.p50Ms)} | ${f(r.p99Ms)} |`);
  if (rows.some((r) => r.errors > 0)) console.log(`\nerrors: ${rows.map((r) => r.errors).join(', ')}`);
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(
    join(import.meta.dirname, 'results', 'kms-ab.json'),
    `${JSON.stringify({ date: new Date().toISOString(), node: process.version, secondsPerCase: SECONDS, rows }, null, 2)}\n`,
  );
} finally {
  for (const c of closers.reverse()) await c().catch(() => {});
}
