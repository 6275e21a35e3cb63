// The attestation API inside a real `cloister enclave` (under `unshare -n`, software NSM): the app
// asks for a document with curl on 127.0.0.1 and gets one that verifies with the software root.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { verifyAttestation } from '../../../src/attestation/verify.ts';
import { readLogs, readStatus, startEnclave } from '../../helpers/supervisor-harness.ts';

const PCR0 = '5a'.repeat(48);

test('the app gets attestation documents from api.listen_port', { timeout: 30000 }, async (t) => {
  const out = mkdtempSync(join(tmpdir(), 'cloister-api-enclave-'));
  t.after(() => rmSync(out, { recursive: true, force: true }));
  const doc = join(out, 'doc.cbor');
  const state = join(out, 'nsm-state');
  const enclave = startEnclave(t, {
    manifest: 'version: v1\nname: x\ntarget: x\nsources:\n  app: x\napi:\n  listen_port: 9000\n',
    settings: `nsm:\n  kind: software\n  state_dir: ${state}\n  pcrs:\n    "0": "${PCR0}"\n`,
    noBootstrap: false,
    app: [
      'sh',
      '-c',
      [
        `curl -sS --max-time 10 -o ${doc} -H 'Content-Type: application/json' --data '{"nonce":"ZW5jbGF2ZQ=="}' http://127.0.0.1:9000/v1/attestation`,
        'curl -sS --max-time 10 -o /dev/null -w "bad=%{http_code}\\n" --data "{" http://127.0.0.1:9000/v1/attestation',
      ].join(' && '),
    ],
  });
  const status = await readStatus(t, enclave);
  const logs = await readLogs(t, enclave);
  assert.deepEqual(await status.waitFor(['exited', 'fatal']), { status: 'exited', code: 0 }, logs.text);
  await logs.waitFor('bad=400');
  const v = await verifyAttestation(readFileSync(doc), {
    rootPem: readFileSync(join(state, 'root.pem'), 'utf8'),
    nonce: Buffer.from('enclave'),
    pcrs: { 0: PCR0 },
    rejectDebug: true,
    maxAgeMs: 60_000,
  });
  assert.equal(v.digest, 'SHA384');
});
