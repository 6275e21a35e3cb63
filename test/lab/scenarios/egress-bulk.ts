// 64 MiB each way through one egress tunnel (proxy -> vsock -> relay -> server), SHA-256 checked at the
// far end, and the proxy's log says the splice engine carried it (zero-copy on the AF_VSOCK fd).
import assert from 'node:assert/strict';
import { MiB, sha256Of } from '../guest/bytes.ts';
import type { Scenario } from '../guest/lab.ts';
import { pid1Host } from '../guest/pid1-host.ts';
import { drainHash, listenLocal, proxyConnect, sendStream } from '../guest/tunnel.ts';

const BYTES = 64 * MiB;

export const scenario: Scenario = {
  title: 'egress: 64 MiB up and 64 MiB down through the splice engine with matching SHA-256',
  phase: 'pid1',
  timeoutMs: 240_000,
  async run(ctx) {
    const host = await pid1Host(ctx);
    let serverGot: Promise<{ sha256: string; bytes: number }> | undefined;
    const { server, port } = await listenLocal((s) => {
      serverGot = drainHash(s);
      void sendStream(s, 'down', BYTES);
    });
    ctx.defer(() => void server.close());
    const t = await proxyConnect(`127.0.0.1:${port}`);
    assert.equal(t.status, 200, t.head);
    const started = Date.now();
    const [down] = await Promise.all([drainHash(t.socket), sendStream(t.socket, 'up', BYTES)]);
    const ms = Date.now() - started;
    assert.deepEqual(down, { sha256: sha256Of('down', BYTES), bytes: BYTES });
    assert.deepEqual(await serverGot, { sha256: sha256Of('up', BYTES), bytes: BYTES });
    ctx.note('both_ways_ms', ms);
    ctx.note('mib_per_s_each_way', Math.round((BYTES / MiB / (ms / 1000)) * 10) / 10);
    await host.waitFor(
      'the tunnel-closed log line',
      () => /"engine":"splice"[^\n]*tunnel closed/.test(host.out()),
      10_000,
    );
  },
};
