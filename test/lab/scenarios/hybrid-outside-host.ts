// The real `cloister host` outside the VM drives the real `cloister enclave` (PID 1) inside it across a
// virtio-vsock device (vhost-device-vsock, guest CID 3): log stream and ingress through the "hybrid vsock"
// Unix socket, and an interrupted host side leaves the enclave running. The outside half runs on the host
// (test/lab/hybrid.ts); this half asks for it and reports its verdict.
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { type Scenario, sleep } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';

export const scenario: Scenario = pid1Scenario({
  title: 'hybrid vsock: cloister host outside the VM drives cloister enclave inside over virtio-vsock',
  timeoutMs: 200_000,
  // run starts once the enclave is up (and lo, for the app)
  async run(ctx) {
    writeFileSync(`${ctx.env.results}/hybrid-request.json`, JSON.stringify({ at: Date.now() }));
    const done = `${ctx.env.results}/hybrid-done.json`;
    const end = Date.now() + 180_000;
    while (!existsSync(done)) {
      if (Date.now() > end)
        throw new Error('the outside host side never answered (is vhost-device-vsock running?)');
      await sleep(500);
    }
    const verdict = JSON.parse(readFileSync(done, 'utf8')) as Record<string, unknown>;
    ctx.note('verdict', verdict);
    assert.equal(verdict.ok, true, JSON.stringify(verdict, null, 2));
    assert.equal(readFileSync('/proc/1/cmdline', 'utf8').split('\0')[1], 'enclave', 'PID 1 still runs');
  },
});
