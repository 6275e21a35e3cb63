// An app killed by a signal: the status stream carries the signal number, and `cloister host` exits 107.
import assert from 'node:assert/strict';
import type { Scenario } from '../guest/lab.ts';
import { runShortEnclave } from '../guest/short-enclave.ts';

export const scenario: Scenario = {
  title: 'status over real vsock: an app killed by SIGKILL makes cloister host exit 107',
  phase: 'pre',
  async run(ctx) {
    const r = await runShortEnclave(ctx, ['/bin/sh', '-c', 'kill -KILL $$']);
    assert.equal(r.hostCode, 107, `host exit code\nhost stderr:\n${r.host.err()}`);
    assert.match(r.host.err(), /killed by SIGKILL/);
    assert.equal(await r.enclave.stop(), 128 + 9);
  },
};
