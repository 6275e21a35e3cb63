// What the egress benchmarks (bench/egress.ts, bench/transparent.ts) measure with, and the egress plan
// their proxy processes run (bench/egress-side.ts, bench/transparent-side.ts).
import { readFileSync } from 'node:fs';
import { DEFAULT_SETTINGS } from '../src/config/types.ts';
import { type EgressPlan, planEgress } from '../src/plan/index.ts';

/**
 * utime + stime of a process in µs (USER_HZ is 100 on Linux). CPU per operation moves much less than
 * wall-clock rates when other work shares the 2 cores.
 */
export function cpuUs(pid: number): number {
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return (Number(f[11]) + Number(f[12])) * 10_000;
}

/** The p-th percentile (nearest rank) of xs. */
export function pct(xs: number[], p: number): number {
  return [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor((xs.length * p) / 100))]!;
}

export function gbit(r: { bytes: number; seconds: number }): number {
  return (r.bytes * 8) / r.seconds / 1e9;
}

/** The egress plan of a benchmark proxy: these allow rules, proxy on a free port, transparent mode or not. */
export function benchEgressPlan(allow: string[], transparent = false): EgressPlan {
  return planEgress({
    manifestPath: '',
    configDir: '',
    manifest: {
      version: 'v1',
      name: 'bench',
      target: 't',
      sources: { app: 'a' },
      egress: { allow, proxy_port: 0 },
    },
    settings: { ...DEFAULT_SETTINGS, transparent: { ...DEFAULT_SETTINGS.transparent, enabled: transparent } },
  })!;
}
