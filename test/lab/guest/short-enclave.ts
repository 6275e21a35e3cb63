// A short-lived `cloister enclave` (not PID 1: busybox still is) on the real vsock loopback, and
// `cloister host --attach-cid 1` reading its status and log streams. Used by the "pre" scenarios, which
// run one at a time because every enclave serves status on the same port 17000 of CID 1.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cloister, minimalManifest, type Proc, type ScenarioContext } from './lab.ts';

export interface ShortRun {
  enclave: Proc;
  host: Proc;
  /** `cloister host`'s exit code. */
  hostCode: number;
}

export async function runShortEnclave(ctx: ScenarioContext, app: string[], settings = ''): Promise<ShortRun> {
  const manifest = join(ctx.tmp, 'enclaver.yaml');
  writeFileSync(manifest, minimalManifest('lab-short'));
  writeFileSync(
    join(ctx.tmp, 'cloister.yaml'),
    `nsm:\n  kind: software\n  state_dir: ${ctx.tmp}/nsm\n${settings}`,
  );
  // --no-bootstrap: lo must still be down when cloister becomes PID 1 after this phase.
  const enclave = cloister(ctx, [
    'enclave',
    '--transport',
    'vsock',
    '--no-bootstrap',
    '-f',
    manifest,
    '--',
    ...app,
  ]);
  const host = cloister(ctx, [
    'host',
    '--attach-cid',
    '1',
    '--transport',
    'vsock',
    '-f',
    manifest,
    '--status-timeout',
    '60',
  ]);
  const hostCode = await host.exited;
  return { enclave, host, hostCode };
}
