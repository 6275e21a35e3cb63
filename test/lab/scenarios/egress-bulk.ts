// 64 MiB each way through one egress tunnel (proxy -> vsock -> relay -> server), SHA-256 checked at the
// far end, and the proxy's log says the splice engine carried it (zero-copy on the AF_VSOCK fd).
import assert from 'node:assert/strict';
import { MiB } from '../guest/bytes.ts';
import type { Scenario } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';
import { bothWays, listenLocal, noteThroughput, proxyConnect } from '../guest/tunnel.ts';

const BYTES = 64 * MiB;

export const scenario: Scenario = pid1Scenario({
  title: 'egress: 64 MiB up and 64 MiB down through the splice engine with matching SHA-256',
  timeoutMs: 240_000,
  async run(ctx, host) {
    const transfer = bothWays('egress', BYTES);
    const { server, port } = await listenLocal(transfer.serve);
    ctx.defer(() => void server.close());
    const t = await proxyConnect(`127.0.0.1:${port}`);
    assert.equal(t.status, 200, t.head);
    noteThroughput(ctx, BYTES, await transfer.run(t.socket));
    await host.waitFor(
      'the tunnel-closed log line',
      () => /"engine":"splice"[^\n]*tunnel closed/.test(host.out()),
      10_000,
    );
  },
});
