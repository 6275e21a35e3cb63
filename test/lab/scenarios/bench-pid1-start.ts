// For the lab benchmark (bench/lab.ts): how long from init's `exec` of cloister as PID 1 to the app's first
// statement (cloister's own start, bootstrap, services, spawn), against the same app runtime started by a
// shell (sh -> node, to its first statement). Both read /proc/uptime (10 ms steps).
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Scenario, sleep } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';

const uptime = (file: string) => Number(readFileSync(file, 'utf8').trim().split(' ')[0]);

export const scenario: Scenario = pid1Scenario({
  title: 'start-up: PID 1 exec to the app first statement, and the same runtime started by a shell',
  async run(ctx) {
    const end = Date.now() + 120_000;
    while (!existsSync(`${ctx.env.results}/app-first-instruction`)) {
      if (Date.now() > end) throw new Error('the app never ran its first statement');
      await sleep(200);
    }
    const exec = uptime(`${ctx.env.results}/uptime-at-exec`);
    const first = uptime(`${ctx.env.results}/app-first-instruction`);
    assert.ok(first > exec, `the app started after the exec (${exec} -> ${first})`);
    const probe = join(ctx.env.repo, 'test', 'lab', 'guest', 'first-instruction.ts');
    const runs: number[] = [];
    for (let i = 0; i < 3; i++) {
      const at = join(ctx.tmp, `shell-${i}`);
      execFileSync('/bin/sh', [
        '-c',
        `cut -d' ' -f1 /proc/uptime > ${at}.start; exec "$0" "$1" "$2"`,
        ctx.env.node,
        probe,
        at,
      ]);
      runs.push(Math.round((uptime(at) - uptime(`${at}.start`)) * 1000));
    }
    ctx.note('pid1_exec_to_app_ms', Math.round((first - exec) * 1000));
    ctx.note('shell_to_app_ms', runs);
  },
});
