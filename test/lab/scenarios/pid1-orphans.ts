// PID 1 duties: the app starts 20 processes and abandons them (their parent shell exits at once), so the
// kernel reparents them to PID 1, cloister. When they exit, cloister must reap them: no zombie is left.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { type Scenario, sleep } from '../guest/lab.ts';
import { INGRESS_PLAIN, pid1Scenario } from '../guest/pid1-host.ts';

/** [state, ppid] from /proc/<pid>/stat, or null once the pid is gone (reaped). */
function stat(pid: number): [string, number] | null {
  if (!existsSync(`/proc/${pid}/stat`)) return null;
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return [f[0]!, Number(f[1])];
  } catch {
    return null;
  }
}

export const scenario: Scenario = pid1Scenario({
  title: 'PID 1: 20 orphans the app leaves behind are reaped, no zombie left',
  async run() {
    const res = await fetch(`http://127.0.0.1:${INGRESS_PLAIN}/orphans?n=20`);
    const { pids } = (await res.json()) as { pids: number[] };
    assert.equal(pids.length, 20);
    const parents = pids
      .map(stat)
      .filter((s) => s !== null)
      .map((s) => s[1]);
    assert.ok(parents.length > 0 && parents.every((p) => p === 1), `orphans belong to PID 1: ${parents}`);
    // Each sleeps 4 s; give cloister's SIGCHLD handling time under emulation.
    const end = Date.now() + 30_000;
    let left = pids;
    while (Date.now() < end) {
      left = pids.filter((p) => stat(p) !== null);
      if (left.length === 0) break;
      await sleep(250);
    }
    assert.deepEqual(
      left.map((p) => [p, ...(stat(p) ?? [])]),
      [],
      'every orphan exited and was reaped (none still a zombie)',
    );
  },
});
