// Every service, started, used once and closed, leaves no handle behind: no server, socket, pipe or timer
// (process.getActiveResourcesInfo() in a child process, so this test's own handles do not count).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { test } from 'node:test';

const CHILD = new URL('../../helpers/fixtures/service-handles.ts', import.meta.url).pathname;

test('egress relay and proxy, KMS proxy, attestation API, metrics, both ingress sides, attested TLS, KMS emulator, DNS stub: close() leaves nothing open', () => {
  const r = spawnSync(process.execPath, ['--import', 'tsx', CHILD], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(r.status, 0, `the child did not exit by itself (a handle kept it alive?):\n${r.stderr}`);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as {
    statuses: Record<string, number>;
    before: string[];
    after: string[];
  };
  // Each service really answered before it was closed.
  assert.deepEqual(out.statuses, {
    api: 404,
    metrics: 503,
    viaHostIngress: 200,
    kms: 405,
    egress: 502,
    // The KMS emulator refuses a GET (it serves POST only).
    emulator: 400,
    attested: 'app\n',
  });
  const left = [...out.after];
  for (const b of out.before) {
    const i = left.indexOf(b);
    if (i >= 0) left.splice(i, 1);
  }
  assert.deepEqual(left, [], `handles left after every service closed: ${left.join(', ')}`);
});
