// The enclave's kernel (Linux 4.14) refuses splice() from AF_VSOCK sockets with EINVAL; the lab's 6.1
// allows it. With a shim that makes splice from vsock fail the 4.14 way (guest/splice-refuse.c, loaded into
// both cloister enclave and cloister host), an egress tunnel must still carry 8 MiB each way intact: the
// splice pump copies that direction through user space instead of failing the tunnel.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB } from '../guest/bytes.ts';
import { cloister, type Scenario } from '../guest/lab.ts';
import { startEgressEnclave } from '../guest/short-enclave.ts';
import { bothWays, listenLocal, proxyConnect } from '../guest/tunnel.ts';

const BYTES = 8 * MiB;
const PROXY_PORT = 10100;

export const scenario: Scenario = {
  title: 'splice refused on vsock (as Linux 4.14 does): the tunnel falls back to copying, every byte intact',
  phase: 'pre',
  timeoutMs: 120_000,
  async run(ctx) {
    const refusals = join(ctx.tmp, 'refusals');
    const env = {
      ...process.env,
      LD_PRELOAD: `${ctx.env.results}/splice-refuse.so`,
      LAB_SPLICE_REFUSALS: refusals,
    };
    const { enclave, manifest } = await startEgressEnclave(ctx, {
      name: 'lab-fallback',
      proxyPort: PROXY_PORT,
      settings: 'log:\n  level: debug\n',
      env,
    });
    const host = cloister(ctx, ['host', '--attach-cid', '1', '--transport', 'vsock', '-f', manifest], env);
    await host.waitFor('the enclave status', () => host.out().includes('app started'), 60_000);

    const transfer = bothWays('fallback', BYTES);
    const { server, port } = await listenLocal(transfer.serve);
    ctx.defer(() => void server.close());
    const t = await proxyConnect(`127.0.0.1:${port}`, PROXY_PORT);
    assert.equal(t.status, 200, t.head);
    await transfer.run(t.socket);
    assert.ok(existsSync(refusals), 'the shim refused at least one splice from vsock');
    ctx.note('refusals', readFileSync(refusals).length);
    assert.equal(await enclave.stop(), 128 + 15);
  },
};
