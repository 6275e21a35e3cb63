// The single executable: build time (warm runtime cache), size, the JavaScript measured with it (the SEA's
// one-file bundle, and the KMS proxy's chunk of dist/), and the time to run `cloister --version` from the
// binary compared with the bundle on the machine's Node and on the pinned LTS (median of RUNS).
// Run: npm run build && node --import tsx bench/package.ts
import { execFileSync, spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cachedPinnedNode, DIST_CLI, NODE_VERSION } from '../test/helpers/build-outputs.ts';

const RUNS = 15;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

function timeVersion(cmd: string, args: string[]): number {
  const times: number[] = [];
  for (let i = 0; i < RUNS; i++) {
    const t0 = performance.now();
    const r = spawnSync(cmd, [...args, '--version'], { encoding: 'utf8' });
    times.push(performance.now() - t0);
    if (r.status !== 0) throw new Error(`${cmd} --version failed: ${r.stderr}`);
  }
  return median(times);
}

/** The dist/ chunk that holds the KMS proxy (found by its start-up log line, whatever its hash). */
function kmsProxyChunk(): { name: string; size: number } | undefined {
  const dir = 'dist/chunks';
  for (const name of readdirSync(dir)) {
    if (!name.endsWith('.js')) continue;
    const path = join(dir, name);
    if (readFileSync(path, 'utf8').includes('kms proxy listening'))
      return { name, size: statSync(path).size };
  }
  return undefined;
}

const work = mkdtempSync(join(tmpdir(), 'cloister-bench-package-'));
try {
  const out = join(work, 'cloister');
  const builds: number[] = [];
  let summary: { size: number; sha256: string; bundleSize: number } | undefined;
  for (let i = 0; i < 2; i++) {
    const t0 = performance.now();
    const stdout = execFileSync(
      process.execPath,
      ['scripts/build-binary.mjs', '--json', '--out', out, '--work-dir', join(work, 'w')],
      {
        encoding: 'utf8',
        stdio: ['ignore', 'pipe', 'ignore'],
      },
    );
    builds.push((performance.now() - t0) / 1000);
    summary = JSON.parse(stdout.trim().split('\n').pop()!);
  }
  const lts = cachedPinnedNode();
  const rows: [string, string][] = [
    ['binary size', `${(summary!.size / 1e6).toFixed(1)} MB`],
    ['JavaScript bundle in the binary', `${summary!.bundleSize.toLocaleString('en')} bytes`],
    ['build time, warm runtime cache (median of 2)', `${median(builds).toFixed(1)} s`],
    ['`--version`: single executable', `${timeVersion(out, []).toFixed(0)} ms`],
    [
      `\`--version\`: node ${process.version} dist/cli.js`,
      `${timeVersion(process.execPath, [DIST_CLI]).toFixed(0)} ms`,
    ],
  ];
  const kms = kmsProxyChunk();
  if (!kms) throw new Error('no dist/chunks/*.js holds the KMS proxy: run npm run build first');
  rows.push(['KMS proxy chunk (dist/chunks, `npm run build`)', `${kms.size.toLocaleString('en')} bytes`]);
  if (existsSync(lts))
    rows.push([
      `\`--version\`: node v${NODE_VERSION} dist/cli.js`,
      `${timeVersion(lts, [DIST_CLI]).toFixed(0)} ms`,
    ]);

  console.log('| Benchmark | Value |\n|---|---|');
  for (const [k, v] of rows) console.log(`| ${k} | ${v} |`);
  mkdirSync('bench/results', { recursive: true });
  writeFileSync(
    'bench/results/package.json',
    `${JSON.stringify({ date: new Date().toISOString(), runs: RUNS, rows }, null, 2)}\n`,
  );
} finally {
  rmSync(work, { recursive: true, force: true });
}
