// Runs one phase's scenarios inside the guest and writes one result file per scenario into the shared
// results directory (<name>.json, written whole then renamed), which test/lab/lab.test.ts turns into
// node:test results. Each scenario has a deadline; one that fails or hangs never stops the others.
import { mkdirSync, mkdtempSync, readdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { labEnv, type Scenario, type ScenarioContext } from './lab.ts';

const phase = process.argv[2];
const env = labEnv();
const dir = join(env.repo, 'test', 'lab', 'scenarios');
const only = process.env.LAB_ONLY?.split(',').filter(Boolean);

function write(name: string, value: unknown): void {
  const file = join(env.results, `${name}.json`);
  writeFileSync(`${file}.tmp`, `${JSON.stringify(value)}\n`);
  renameSync(`${file}.tmp`, file);
}

mkdirSync('/tmp/scenarios', { recursive: true });
for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.ts'))
  .sort()) {
  const name = file.slice(0, -3);
  if (only?.length && !only.includes(name)) continue;
  const { scenario } = (await import(join(dir, file))) as { scenario: Scenario };
  if (scenario.phase !== phase) continue;
  const notes: Record<string, unknown> = {};
  const deferred: (() => Promise<void> | void)[] = [];
  const ctx: ScenarioContext = {
    env,
    tmp: mkdtempSync(`/tmp/scenarios/${name}-`),
    note: (k, v) => {
      notes[k] = v;
    },
    defer: (fn) => deferred.push(fn),
  };
  const started = Date.now();
  process.stdout.write(`lab: ${phase} ${name}: start\n`);
  if (scenario.endsBoot) write(`${name}.started`, { at: started });
  const budget = scenario.timeoutMs ?? 60_000;
  let timer: NodeJS.Timeout | undefined;
  let error: string | null = null;
  try {
    await Promise.race([
      scenario.run(ctx),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after ${budget} ms in the guest`)), budget);
      }),
    ]);
  } catch (err) {
    error = (err as Error).stack ?? String(err);
  } finally {
    clearTimeout(timer);
  }
  for (const fn of deferred.reverse()) {
    try {
      await fn();
    } catch (err) {
      error ??= `cleanup: ${(err as Error).message}`;
    }
  }
  const ms = Date.now() - started;
  process.stdout.write(`lab: ${phase} ${name}: ${error ? 'FAIL' : 'ok'} (${ms} ms)\n`);
  write(name, { ok: error === null, error, ms, notes });
}
write(`phase-${phase}-done`, { at: Date.now() });
if (phase === 'pid1') {
  // Normally a scenario ends the boot by stopping PID 1. If none did (filtered out, or it failed), power
  // off here so the host does not wait for its deadline.
  await new Promise((r) => setTimeout(r, 2000));
  writeFileSync('/proc/sysrq-trigger', 'o');
}
process.exit(0);
