// The kernel lab (docs/lab.md): one QEMU boot runs every scenario in test/lab/scenarios/ inside a real
// Linux kernel, with the single executable (build/cloister-linux-x64) as the guest's PID 1 over real
// AF_VSOCK (loopback transport, CID 1). Each scenario becomes one test here, judged from the result
// file the guest wrote; a scenario the guest never reported (it hung, the guest was killed at the
// deadline) fails with the tail of the console.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { binaryPath, pinnedNode, REPO } from '../helpers/build-outputs.ts';
import { pid1Args, writePid1Config } from './config.ts';
import type { Scenario } from './guest/lab.ts';
import { serveHybridRequests, startVsockDevice, type VsockDevice } from './hybrid.ts';
import { KMS_CREDS, prepareKms } from './kms.ts';
import { guestPieces } from './pieces.ts';
import { type BootResult, boot, buildInitramfs } from './vm.ts';

const repo = REPO;
const bin = binaryPath('x64');
const scenarioDir = join(import.meta.dirname, 'scenarios');
const only = process.env.LAB_ONLY?.split(',').filter(Boolean);
const deadlineMs = Number(process.env.LAB_DEADLINE_MS ?? 15 * 60_000);
const MEMORY_MB = 2048;

const scenarios: { name: string; s: Scenario }[] = [];
for (const file of readdirSync(scenarioDir)
  .filter((f) => f.endsWith('.ts'))
  .sort()) {
  const name = file.slice(0, -3);
  if (only?.length && !only.includes(name)) continue;
  const { scenario } = (await import(join(scenarioDir, file))) as { scenario: Scenario };
  scenarios.push({ name, s: scenario });
}

let work: string;
let results: string;
let run: BootResult;

function shellQuote(s: string): string {
  return `'${s.replace(/'/g, `'\\''`)}'`;
}

before(
  async () => {
    if (!existsSync(bin))
      throw new Error(`${bin} is missing: run \`npm run build:binary\` (npm run test:lab does)`);
    const node = pinnedNode() as string;
    const pieces = guestPieces();
    // LAB_WORK_DIR: where bench/lab.ts wants the results (it reads the scenarios' notes afterwards).
    work = process.env.LAB_WORK_DIR ?? mkdtempSync(join(tmpdir(), 'cloister-lab-'));
    results = join(work, 'results');
    writePid1Config(results);
    await prepareKms(results, bin);
    const env = {
      ...{ REPO: repo, NODE: node, BIN: bin, HOME: '/tmp', LAB_ONLY: only?.join(',') ?? '' },
      // PID 1's own AWS credentials (IMDS gives them on EC2): its KMS proxy signs with them.
      ...{ AWS_ACCESS_KEY_ID: KMS_CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: KMS_CREDS.secretAccessKey },
      AWS_EC2_METADATA_DISABLED: 'true',
    };
    writeFileSync(
      join(results, 'lab.env'),
      [
        ...Object.entries(env).map(([k, v]) => `export ${k}=${shellQuote(v)}`),
        `PID1_ARGS=${shellQuote(pid1Args(node, repo).join(' '))}`,
        '',
      ].join('\n'),
    );
    // The splice-refusal shim (guest/splice-refuse.c) for the fallback scenario, built for this machine's glibc.
    execFileSync('cc', [
      '-shared',
      '-fPIC',
      '-O2',
      '-o',
      join(results, 'splice-refuse.so'),
      join(import.meta.dirname, 'guest', 'splice-refuse.c'),
      '-ldl',
    ]);
    const initramfs = join(work, 'initramfs.cpio');
    buildInitramfs(pieces, initramfs);
    process.stderr.write(
      `lab: booting (console: ${join(work, 'console.log')}, deadline ${deadlineMs / 1000} s)\n`,
    );
    // The virtio-vsock device for the hybrid scenario; without it the boot goes on and that scenario fails
    // with the reason (the others do not need it).
    let device: VsockDevice | null = null;
    let stopHybrid = () => {};
    try {
      if (!scenarios.some((x) => x.name === 'hybrid-outside-host')) throw new Error('not selected');
      device = await startVsockDevice(work, MEMORY_MB);
      stopHybrid = serveHybridRequests({ results, bin, udsPath: device.udsPath });
    } catch (err) {
      writeFileSync(
        join(results, 'hybrid-done.json'),
        JSON.stringify({ ok: false, error: (err as Error).message }),
      );
    }
    try {
      run = await boot(
        {
          pieces,
          resultsDir: results,
          consoleFile: join(work, 'console.log'),
          deadlineMs,
          memoryMb: MEMORY_MB,
          extraArgs: device?.qemuArgs,
        },
        initramfs,
      );
    } finally {
      stopHybrid();
      device?.stop();
    }
    process.stderr.write(
      `lab: guest ran ${(run.ms / 1000).toFixed(1)} s${run.timedOut ? ' (killed at the deadline)' : ''}\n`,
    );
  },
  { timeout: deadlineMs + 10 * 60_000 },
);

function consoleTail(): string {
  return run.console.split('\n').slice(-60).join('\n');
}

function readResult(
  name: string,
): { ok: boolean; error: string | null; ms: number; notes: Record<string, unknown> } | null {
  const f = join(results, `${name}.json`);
  return existsSync(f) ? JSON.parse(readFileSync(f, 'utf8')) : null;
}

for (const { name, s } of scenarios) {
  test(`lab: ${s.title}`, () => {
    if (s.endsBoot) {
      assert.ok(
        existsSync(join(results, `${name}.started.json`)),
        `${name} never started in the guest:\n${consoleTail()}`,
      );
    } else {
      const r = readResult(name);
      assert.ok(
        r,
        `${name}: the guest wrote no result${run.timedOut ? ' (killed at the deadline)' : ''}:\n${consoleTail()}`,
      );
      assert.ok(r.ok, `${name} failed in the guest:\n${r.error}`);
    }
    s.afterBoot?.({ results, console: run.console });
  });
}
