// The enclave's kernel (Linux 4.14) refuses splice() from AF_VSOCK sockets with EINVAL; the lab's 6.1
// allows it. With a shim that makes splice from vsock fail the 4.14 way (guest/splice-refuse.c, loaded into
// both cloister enclave and cloister host), an egress tunnel must still carry 8 MiB each way intact: the
// splice pump copies that direction through user space instead of failing the tunnel.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { MiB, sha256Of } from '../guest/bytes.ts';
import { cloister, minimalManifest, type Scenario, waitForTcp } from '../guest/lab.ts';
import { drainHash, listenLocal, proxyConnect, sendStream } from '../guest/tunnel.ts';

const BYTES = 8 * MiB;
const PROXY_PORT = 10100;

export const scenario: Scenario = {
  title: 'splice refused on vsock (as Linux 4.14 does): the tunnel falls back to copying, every byte intact',
  phase: 'pre',
  timeoutMs: 120_000,
  async run(ctx) {
    // lo is down in this phase (PID 1 brings it up later): up for this scenario only, down again after.
    execFileSync('ip', ['link', 'set', 'lo', 'up']);
    ctx.defer(() => void execFileSync('ip', ['link', 'set', 'lo', 'down']));
    const refusals = join(ctx.tmp, 'refusals');
    const env = {
      ...process.env,
      LD_PRELOAD: `${ctx.env.results}/splice-refuse.so`,
      LAB_SPLICE_REFUSALS: refusals,
    };
    const manifest = join(ctx.tmp, 'enclaver.yaml');
    writeFileSync(
      manifest,
      `${minimalManifest('lab-fallback')}egress:\n  proxy_port: ${PROXY_PORT}\n  allow:\n    - 127.0.0.1\n`,
    );
    writeFileSync(
      join(ctx.tmp, 'cloister.yaml'),
      `nsm:\n  kind: software\n  state_dir: ${ctx.tmp}/nsm\nlog:\n  level: debug\n`,
    );
    const app = ['/bin/sh', '-c', 'sleep 600'];
    const enclave = cloister(
      ctx,
      [
        'enclave',
        '--transport',
        'vsock',
        '--parent-cid',
        '1',
        '--no-bootstrap',
        '-f',
        manifest,
        '--',
        ...app,
      ],
      env,
    );
    const host = cloister(ctx, ['host', '--attach-cid', '1', '--transport', 'vsock', '-f', manifest], env);
    await waitForTcp(PROXY_PORT, 60_000);
    await host.waitFor('the enclave status', () => host.out().includes('app started'), 60_000);

    let serverGot: Promise<{ sha256: string; bytes: number }> | undefined;
    const { server, port } = await listenLocal((s) => {
      serverGot = drainHash(s);
      void sendStream(s, 'fallback-down', BYTES);
    });
    ctx.defer(() => void server.close());
    const t = await proxyConnect(`127.0.0.1:${port}`, PROXY_PORT);
    assert.equal(t.status, 200, t.head);
    const [down] = await Promise.all([drainHash(t.socket), sendStream(t.socket, 'fallback-up', BYTES)]);
    assert.deepEqual(down, { sha256: sha256Of('fallback-down', BYTES), bytes: BYTES });
    assert.deepEqual(await serverGot, { sha256: sha256Of('fallback-up', BYTES), bytes: BYTES });
    assert.ok(existsSync(refusals), 'the shim refused at least one splice from vsock');
    ctx.note('refusals', readFileSync(refusals).length);
    assert.equal(await enclave.stop(), 128 + 15);
  },
};
