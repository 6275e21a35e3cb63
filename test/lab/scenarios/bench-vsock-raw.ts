// Baseline for the lab benchmark (bench/lab.ts): 64 MiB each way over one raw AF_VSOCK connection in the
// same guest (cloister's own vsock transport, CID 1, no proxy, no relay), checked like egress-bulk, so the
// egress and ingress numbers of this boot can be read as ratios to what the kernel's vsock gives.
import { VsockTransport } from '../../../src/transport/vsock.ts';
import { MiB } from '../guest/bytes.ts';
import type { Scenario } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';
import { bothWays, noteThroughput } from '../guest/tunnel.ts';

const BYTES = 64 * MiB;
const PORT = 5000;

export const scenario: Scenario = pid1Scenario({
  title: 'vsock baseline: 64 MiB each way over one raw AF_VSOCK connection',
  timeoutMs: 240_000,
  // run starts on a settled guest (host side up), as the other bulk scenarios do: comparable numbers
  async run(ctx) {
    const vsock = new VsockTransport();
    const server = await vsock.listen(PORT);
    ctx.defer(() => void server.close());
    const transfer = bothWays('raw', BYTES);
    server.on('connection', transfer.serve);
    noteThroughput(ctx, BYTES, await transfer.run(await vsock.connect(1, PORT)));
  },
});
