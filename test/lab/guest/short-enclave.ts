// A short-lived `cloister enclave` (not PID 1: busybox still is) on the real vsock loopback, and
// `cloister host --attach-cid 1` reading its status and log streams. Used by the "pre" scenarios, which
// run one at a time because every enclave serves status on the same port 17000 of CID 1.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { cloister, minimalManifest, type Proc, type ScenarioContext, waitForTcp } from './lab.ts';

export interface ShortRun {
  enclave: Proc;
  host: Proc;
  /** `cloister host`'s exit code. */
  hostCode: number;
}

/** Writes <tmp>/enclaver.yaml and <tmp>/cloister.yaml (software NSM, then `settings`); returns the manifest. */
function writeConfig(ctx: ScenarioContext, manifestText: string, settings: string): string {
  const manifest = join(ctx.tmp, 'enclaver.yaml');
  writeFileSync(manifest, manifestText);
  writeFileSync(
    join(ctx.tmp, 'cloister.yaml'),
    `nsm:\n  kind: software\n  state_dir: ${ctx.tmp}/nsm\n${settings}`,
  );
  return manifest;
}

/**
 * `cloister enclave` over vsock, not bootstrapping: lo must still be down when cloister becomes PID 1.
 * `parentCid`: where its egress relay is (the guest's own CID 1 when a scenario relays or listens there).
 */
function startEnclave(
  ctx: ScenarioContext,
  manifest: string,
  app: string[],
  opts: { parentCid?: number; env?: NodeJS.ProcessEnv } = {},
): Proc {
  const parent = opts.parentCid === undefined ? [] : ['--parent-cid', String(opts.parentCid)];
  return cloister(
    ctx,
    ['enclave', '--transport', 'vsock', ...parent, '--no-bootstrap', '-f', manifest, '--', ...app],
    opts.env,
  );
}

/** `cloister host --attach-cid 1` for the enclave of `manifest`: its status and logs, and its egress relay. */
export function attachHost(ctx: ScenarioContext, manifest: string, statusTimeoutS = 60): Proc {
  return cloister(ctx, [
    'host',
    '--attach-cid',
    '1',
    '--transport',
    'vsock',
    '-f',
    manifest,
    '--status-timeout',
    String(statusTimeoutS),
  ]);
}

export async function runShortEnclave(ctx: ScenarioContext, app: string[], settings = ''): Promise<ShortRun> {
  const manifest = writeConfig(ctx, minimalManifest('lab-short'), settings);
  const enclave = startEnclave(ctx, manifest, app);
  const host = attachHost(ctx, manifest);
  const hostCode = await host.exited;
  return { enclave, host, hostCode };
}

export interface EgressEnclave {
  enclave: Proc;
  manifest: string;
}

/**
 * An enclave whose app only sleeps and whose egress proxy (127.0.0.1:`proxyPort`, allowing 127.0.0.1) is
 * accepting when this resolves. lo is up for the scenario only (down again after it: PID 1 brings it up).
 */
export async function startEgressEnclave(
  ctx: ScenarioContext,
  opts: { name: string; proxyPort: number; settings?: string; env?: NodeJS.ProcessEnv },
): Promise<EgressEnclave> {
  execFileSync('ip', ['link', 'set', 'lo', 'up']);
  ctx.defer(() => void execFileSync('ip', ['link', 'set', 'lo', 'down']));
  const manifest = writeConfig(
    ctx,
    `${minimalManifest(opts.name)}egress:\n  proxy_port: ${opts.proxyPort}\n  allow:\n    - 127.0.0.1\n`,
    opts.settings ?? '',
  );
  const enclave = startEnclave(ctx, manifest, ['/bin/sh', '-c', 'sleep 600'], {
    parentCid: 1,
    env: opts.env,
  });
  await waitForTcp(opts.proxyPort, 60_000);
  return { enclave, manifest };
}
