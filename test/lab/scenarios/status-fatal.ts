// An app that cannot start: status `fatal` with the reason, and `cloister host` exits 108 saying why.
import assert from 'node:assert/strict';
import type { Scenario } from '../guest/lab.ts';
import { runShortEnclave } from '../guest/short-enclave.ts';

export const scenario: Scenario = {
  title: 'status over real vsock: an app that cannot start is a fatal status, cloister host exits 108',
  phase: 'pre',
  async run(ctx) {
    const r = await runShortEnclave(ctx, ['/no/such/lab-app']);
    assert.equal(r.hostCode, 108, `host exit code\nhost stderr:\n${r.host.err()}`);
    assert.match(r.host.err(), /enclave failed: cannot start the app: \/no\/such\/lab-app/);
    assert.equal(await r.enclave.stop(), 1);
  },
};
