// Ingress on a real kernel: TCP (cloister host, 127.0.0.1:18080) -> real vsock port 8080 -> cloister
// enclave -> the app on 127.0.0.1:8080, 64 MiB each way with SHA-256, carried by the splice engine.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { MiB, sha256Of } from '../guest/bytes.ts';
import type { Scenario } from '../guest/lab.ts';
import { INGRESS_PLAIN, pid1Scenario } from '../guest/pid1-host.ts';
import { drainHash, sendStream } from '../guest/tunnel.ts';

const BYTES = 64 * MiB;

export const scenario: Scenario = pid1Scenario({
  title: 'ingress: 64 MiB in and 64 MiB out through TCP -> vsock -> app with matching SHA-256',
  timeoutMs: 240_000,
  async run(ctx, host) {
    let started = Date.now();
    const up = await new Promise<string>((resolve, reject) => {
      const req = request(
        {
          port: INGRESS_PLAIN,
          host: '127.0.0.1',
          method: 'POST',
          path: '/sha256',
          agent: false,
          headers: { 'content-length': BYTES },
        },
        (res) => {
          let body = '';
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => resolve(body));
        },
      );
      req.on('error', reject);
      void sendStream(req, 'ingress-up', BYTES);
    });
    ctx.note('in_ms', Date.now() - started);
    assert.deepEqual(JSON.parse(up), { sha256: sha256Of('ingress-up', BYTES), bytes: BYTES });
    started = Date.now();
    const down = await new Promise<{ sha256: string; bytes: number }>((resolve, reject) => {
      request(
        {
          port: INGRESS_PLAIN,
          host: '127.0.0.1',
          path: `/stream?seed=ingress-down&bytes=${BYTES}`,
          agent: false,
        },
        (res) => void drainHash(res).then(resolve, reject),
      )
        .on('error', reject)
        .end();
    });
    ctx.note('out_ms', Date.now() - started);
    assert.deepEqual(down, { sha256: sha256Of('ingress-down', BYTES), bytes: BYTES });
    await host.waitFor(
      'an ingress-closed log line',
      () => /"engine":"splice"[^\n]*ingress connection closed/.test(host.out()),
      10_000,
    );
  },
});
