// Baseline for the lab benchmark (bench/lab.ts): 64 MiB each way over one raw AF_VSOCK connection in the
// same guest (cloister's own vsock transport, CID 1, no proxy, no relay), checked like egress-bulk, so the
// egress and ingress numbers of this boot can be read as ratios to what the kernel's vsock gives.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { VsockTransport } from '../../../src/transport/vsock.ts';
import { MiB, sha256Of } from '../guest/bytes.ts';
import type { Scenario } from '../guest/lab.ts';
import { pid1Host } from '../guest/pid1-host.ts';
import { drainHash, sendStream } from '../guest/tunnel.ts';

const BYTES = 64 * MiB;
const PORT = 5000;

export const scenario: Scenario = {
  title: 'vsock baseline: 64 MiB each way over one raw AF_VSOCK connection',
  phase: 'pid1',
  timeoutMs: 240_000,
  async run(ctx) {
    await pid1Host(ctx); // measure on a settled guest, as the other bulk scenarios do
    const vsock = new VsockTransport();
    const server = await vsock.listen(PORT);
    ctx.defer(() => void server.close());
    let serverGot: Promise<{ sha256: string; bytes: number }> | undefined;
    server.on('connection', (s: Socket) => {
      serverGot = drainHash(s);
      void sendStream(s, 'raw-down', BYTES);
    });
    const c = await vsock.connect(1, PORT);
    const started = Date.now();
    const [down] = await Promise.all([drainHash(c), sendStream(c, 'raw-up', BYTES)]);
    const ms = Date.now() - started;
    assert.deepEqual(down, { sha256: sha256Of('raw-down', BYTES), bytes: BYTES });
    assert.deepEqual(await serverGot, { sha256: sha256Of('raw-up', BYTES), bytes: BYTES });
    ctx.note('both_ways_ms', ms);
    ctx.note('mib_per_s_each_way', Math.round((BYTES / MiB / (ms / 1000)) * 10) / 10);
  },
};
