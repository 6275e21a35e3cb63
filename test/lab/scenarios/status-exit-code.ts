// `cloister host` attached over real AF_VSOCK reads the app's output from the log stream (17001) and its
// exit code from the status stream (17000), and exits with that code; the enclave side stays up until
// told to stop.
import assert from 'node:assert/strict';
import type { Scenario } from '../guest/lab.ts';
import { runShortEnclave } from '../guest/short-enclave.ts';

export const scenario: Scenario = {
  title: 'status and log streams over real vsock: cloister host exits with the app exit code',
  phase: 'pre',
  async run(ctx) {
    const r = await runShortEnclave(ctx, [
      '/bin/sh',
      '-c',
      'echo lab-line-out; echo lab-line-err >&2; exit 3',
    ]);
    assert.equal(r.hostCode, 3, `host exit code\nhost stderr:\n${r.host.err()}`);
    assert.match(r.host.out(), /lab-line-out\n(.*\n)*lab-line-err/);
    assert.match(r.host.out(), /Entrypoint exited with 3/);
    assert.equal(r.enclave.child.exitCode, null, 'the enclave side keeps serving after the app ended');
    // SIGTERM to cloister once the app is gone: it exits with the app's code (docs/supervisor.md).
    assert.equal(await r.enclave.stop(), 3);
  },
};
