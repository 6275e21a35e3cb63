// The kernel lab as a benchmark (docs/lab.md): one boot runs the bulk and start-up scenarios, and this
// prints ratios within that boot. TCG makes absolute numbers meaningless (the guest's CPU is emulated and
// the host is shared); the ratios say what cloister's path costs against the kernel's own vsock and
// against starting the app from a shell.
//
//   egress: 64 MiB each way, app -> proxy -> vsock -> relay -> server   (egress-bulk)
//   ingress: 64 MiB in, then out, client -> host TCP -> vsock -> enclave -> app   (ingress-bulk)
//   raw vsock: 64 MiB each way over one AF_VSOCK connection   (bench-vsock-raw)
//   start-up: init's exec of PID 1 -> the app's first statement, vs sh -> node -> first statement
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SCENARIOS = ['bench-vsock-raw', 'egress-bulk', 'ingress-bulk', 'bench-pid1-start', 'zz-pid1-sigterm'];
const MIB = 64;

const work = mkdtempSync(join(tmpdir(), 'cloister-lab-bench-'));
const r = spawnSync(
  process.execPath,
  ['--import', 'tsx', '--test', '--test-reporter=dot', 'test/lab/lab.test.ts'],
  { stdio: 'inherit', env: { ...process.env, LAB_ONLY: SCENARIOS.join(','), LAB_WORK_DIR: work } },
);
if (r.status !== 0) {
  console.error(`bench/lab: the lab run failed (exit ${r.status}); console: ${join(work, 'console.log')}`);
  process.exit(1);
}
const notes = (name: string) =>
  (
    JSON.parse(readFileSync(join(work, 'results', `${name}.json`), 'utf8')) as {
      notes: Record<string, unknown>;
    }
  ).notes;

const raw = notes('bench-vsock-raw');
const egress = notes('egress-bulk');
const ingress = notes('ingress-bulk');
const start = notes('bench-pid1-start');
const rawMs = Number(raw.both_ways_ms);
const egressMs = Number(egress.both_ways_ms);
const ingressMs = Number(ingress.in_ms) + Number(ingress.out_ms);
const shell = (start.shell_to_app_ms as number[]).slice().sort((a, b) => a - b)[1]!;
const pid1 = Number(start.pid1_exec_to_app_ms);

const rows = [
  ['raw AF_VSOCK, 64 MiB each way at once', `${rawMs} ms`, '1.00'],
  ['egress through cloister, 64 MiB each way at once', `${egressMs} ms`, (egressMs / rawMs).toFixed(2)],
  ['ingress through cloister, 64 MiB in then 64 MiB out', `${ingressMs} ms`, (ingressMs / rawMs).toFixed(2)],
  ['sh -> node app, to its first statement (median of 3)', `${shell} ms`, '1.00'],
  ['exec of cloister as PID 1 -> the app first statement', `${pid1} ms`, (pid1 / shell).toFixed(2)],
];
console.log('\nkernel lab (one boot, TCG: compare ratios, not absolute numbers)');
for (const [what, value, ratio] of rows)
  console.log(`  ${what!.padEnd(56)} ${value!.padStart(10)}  x${ratio}`);
mkdirSync('bench/results', { recursive: true });
writeFileSync(
  'bench/results/lab.json',
  `${JSON.stringify({ mib: MIB, raw_vsock_ms: rawMs, egress_ms: egressMs, ingress_ms: ingressMs, pid1_exec_to_app_ms: pid1, shell_to_app_ms: start.shell_to_app_ms, egress_vs_raw: egressMs / rawMs, ingress_vs_raw: ingressMs / rawMs, pid1_vs_shell: pid1 / shell }, null, 2)}\n`,
);
console.log('wrote bench/results/lab.json');
