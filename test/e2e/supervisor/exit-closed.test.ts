// `cloister enclave` ends because everything it started is closed, not through process.exit: after
// SIGTERM, with the egress proxy, the attestation API and metrics running and used, no handle is left
// for src/exit.ts's watchdog to name.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { readLogs, readStatus, startEnclave } from '../../helpers/supervisor-harness.ts';

test('cloister enclave exits on SIGTERM with nothing left open', { timeout: 30000 }, async (t) => {
  const state = mkdtempSync(join(tmpdir(), 'cloister-exit-'));
  t.after(() => rmSync(state, { recursive: true, force: true }));
  const enclave = startEnclave(t, {
    manifest:
      'version: v1\nname: x\ntarget: x\nsources:\n  app: x\negress:\n  allow: [example.com]\napi:\n  listen_port: 9000\n',
    settings: `nsm:\n  kind: software\n  state_dir: ${state}\napi:\n  metrics_port: 9100\n`,
    noBootstrap: false,
    app: [
      'sh',
      '-c',
      [
        'curl -sS --max-time 10 -o /dev/null -w "api=%{http_code}\\n" http://127.0.0.1:9000/nowhere',
        'curl -sS --max-time 10 -o /dev/null -w "metrics=%{http_code}\\n" http://127.0.0.1:9100/metrics',
        'curl -sS --max-time 10 -o /dev/null -w "egress=%{http_code}\\n" -x "$HTTP_PROXY" http://denied.invalid/',
        'echo ready',
        'exec sleep 30',
      ].join('; '),
    ],
  });
  const logs = await readLogs(t, enclave);
  const status = await readStatus(t, enclave);
  await logs.waitFor('ready\n');
  for (const answer of ['api=404', 'metrics=200', 'egress=403'])
    assert.match(logs.text, new RegExp(`^${answer}$`, 'm'));
  enclave.proc.kill('SIGTERM');
  await status.waitFor(['exited', 'signaled']);
  const end = await enclave.exited;
  assert.doesNotMatch(enclave.stderr(), /still open after shutdown/);
  assert.equal(end.signal, null);
});
