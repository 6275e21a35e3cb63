// Restart policy on a real kernel: an app that keeps failing is restarted max_restarts times with
// backoff, then its last exit is final.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Scenario } from '../guest/lab.ts';
import { runShortEnclave } from '../guest/short-enclave.ts';

export const scenario: Scenario = {
  title: 'restart policy: on-failure restarts twice with backoff, then the exit code is final',
  phase: 'pre',
  async run(ctx) {
    const runs = join(ctx.tmp, 'runs');
    const r = await runShortEnclave(
      ctx,
      ['/bin/sh', '-c', `echo run >> ${runs}; exit 5`],
      'app:\n  restart: on-failure\n  max_restarts: 2\n  restart_backoff_ms: 100\n  restart_backoff_max_ms: 400\n',
    );
    assert.equal(r.hostCode, 5, `host exit code\nhost stderr:\n${r.host.err()}`);
    assert.equal(readFileSync(runs, 'utf8'), 'run\nrun\nrun\n', 'one first run and two restarts');
    assert.match(r.host.out(), /restarting in 100 ms \(restart 1\)/);
    assert.match(r.host.out(), /restarting in 200 ms \(restart 2\)/);
    assert.equal(await r.enclave.stop(), 5);
  },
};
