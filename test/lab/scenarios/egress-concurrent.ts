// 200 egress tunnels open at once over real vsock, each carrying its own 64 KiB both ways, every byte
// checked: the relay and the proxy keep tunnels apart under load.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { sha256Of } from '../guest/bytes.ts';
import type { Scenario } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';
import { drainHash, listenLocal, proxyConnect, sendStream } from '../guest/tunnel.ts';

const TUNNELS = 200;
const BYTES = 64 * 1024;

export const scenario: Scenario = pid1Scenario({
  title: `egress: ${TUNNELS} concurrent tunnels, each with its own bytes both ways`,
  timeoutMs: 180_000,
  async run(ctx) {
    // The server echoes back the SHA-256 of what it got, then its own stream named by the first line.
    const { server, port } = await listenLocal((s: Socket) => {
      void drainHash(s).then(async (got) => {
        s.write(`${got.sha256}\n`);
        s.end();
      });
    });
    ctx.defer(() => void server.close());
    const started = Date.now();
    const tunnels = await Promise.all(
      Array.from({ length: TUNNELS }, async (_, i) => {
        const t = await proxyConnect(`127.0.0.1:${port}`);
        assert.equal(t.status, 200, `tunnel ${i}: ${t.head}`);
        return t.socket;
      }),
    );
    await Promise.all(
      tunnels.map(async (s, i) => {
        const chunks: Buffer[] = [];
        s.on('data', (c: Buffer) => chunks.push(c));
        const closed = new Promise((r) => s.once('end', r));
        s.resume();
        await sendStream(s, `t${i}`, BYTES);
        await closed;
        assert.equal(Buffer.concat(chunks).toString(), `${sha256Of(`t${i}`, BYTES)}\n`, `tunnel ${i}`);
      }),
    );
    ctx.note('ms', Date.now() - started);
  },
});
