// TLS termination in the enclave: a client speaks HTTPS to cloister host's port 18443, the bytes cross
// real vsock still encrypted, cloister enclave terminates TLS with the port's key and the app (plain HTTP
// on 127.0.0.1:8443) answers.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import type { Scenario } from '../guest/lab.ts';
import { INGRESS_TLS, pid1Scenario } from '../guest/pid1-host.ts';

export const scenario: Scenario = pid1Scenario({
  title: 'ingress: TLS terminated in the enclave, the app answers plain HTTP',
  async run() {
    const out = execFileSync(
      'curl',
      [
        '-sS',
        '--max-time',
        '30',
        '--cacert',
        '/tmp/lab/config/tls/cert.pem',
        `https://127.0.0.1:${INGRESS_TLS}/whoami`,
      ],
      { encoding: 'utf8' },
    );
    const who = JSON.parse(out) as { port: number };
    assert.equal(who.port, 8443, 'the app got the request on its plain port');
  },
});
