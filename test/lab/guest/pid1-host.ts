// The host side for the "pid1" phase: one `cloister host --attach-cid 1` for all its scenarios (as on a
// parent instance, it relays egress on vsock 17002 and forwards ingress), started by the first scenario
// that asks and left running until the guest powers off. Host ports: 18080 -> enclave 8080, 18443 -> 8443.
import { appendFileSync } from 'node:fs';
import { cloister, type Proc, type Scenario, type ScenarioContext, waitForTcp } from './lab.ts';

export const INGRESS_PLAIN = 18080;
export const INGRESS_TLS = 18443;
export const EGRESS_PROXY = 'http://127.0.0.1:10000';

let host: Promise<Proc> | null = null;

export function pid1Host(ctx: ScenarioContext): Promise<Proc> {
  host ??= (async () => {
    // Not deferred to the scenario that happened to start it: later scenarios use it too.
    const p = cloister(
      { ...ctx, defer: () => {} },
      [
        ...['host', '--attach-cid', '1', '--transport', 'vsock', '-f', '/tmp/lab/config/enclaver.yaml'],
        ...['-p', `${INGRESS_PLAIN}:8080`, '-p', `${INGRESS_TLS}:8443`, '--listen-address', '127.0.0.1'],
      ],
      { ...process.env, CLOISTER_LOG_LEVEL: 'debug' },
    );
    // Kept for the host side to read after the boot (the log stream carries cloister enclave's lines).
    for (const s of [p.child.stdout!, p.child.stderr!])
      s.on('data', (d: Buffer) => appendFileSync('/tmp/lab/pid1-host.log', d));
    await waitForTcp(INGRESS_PLAIN, 60_000);
    await p.waitFor('the log stream', () => p.out().includes('Enclave initialized'), 60_000);
    return p;
  })();
  return host;
}

/**
 * A "pid1" scenario: before `run`, the shared host side is started (by the first scenario that needs it)
 * and cloister enclave, PID 1, is serving; `run` gets that `cloister host` to read its output.
 */
export function pid1Scenario(
  s: Omit<Scenario, 'phase' | 'run'> & { run(ctx: ScenarioContext, host: Proc): Promise<void> },
): Scenario {
  return { ...s, phase: 'pid1', run: async (ctx) => s.run(ctx, await pid1Host(ctx)) };
}
