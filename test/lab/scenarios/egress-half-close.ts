// Half-close across the whole egress path, both orders: the client's FIN reaches the server while the
// server still sends; then the server's FIN reaches the client while the client still sends.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { MiB, sha256Of } from '../guest/bytes.ts';
import type { Scenario } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';
import { drainHash, listenLocal, proxyConnect, sendStream } from '../guest/tunnel.ts';

const BYTES = 4 * MiB;

export const scenario: Scenario = pid1Scenario({
  title: 'egress: half-close carried both ways (client FIN first, server FIN first)',
  timeoutMs: 120_000,
  async run(ctx) {
    // Client ends first: the server reads to EOF, only then answers with the hash and its own data.
    {
      const { server, port } = await listenLocal((s: Socket) => {
        void drainHash(s).then(async (got) => {
          s.write(`${got.sha256}\n`);
          await sendStream(s, 'after-fin', BYTES);
        });
      });
      ctx.defer(() => void server.close());
      const t = await proxyConnect(`127.0.0.1:${port}`);
      assert.equal(t.status, 200, t.head);
      const reply = drainHash(t.socket);
      const chunks: Buffer[] = [];
      t.socket.on('data', (c: Buffer) => chunks.push(c));
      await sendStream(t.socket, 'client-first', BYTES);
      const r = await reply;
      const text = Buffer.concat(chunks);
      const nl = text.indexOf('\n');
      assert.equal(
        text.subarray(0, nl).toString(),
        sha256Of('client-first', BYTES),
        'server saw all before EOF',
      );
      assert.equal(r.bytes, nl + 1 + BYTES, 'the server could still send after the client FIN');
    }
    // Server ends first: it sends and FINs at once, then still reads everything the client sends.
    {
      let got: Promise<{ sha256: string; bytes: number }> | undefined;
      const { server, port } = await listenLocal((s: Socket) => {
        got = drainHash(s);
        void sendStream(s, 'server-first', BYTES);
      });
      ctx.defer(() => void server.close());
      const t = await proxyConnect(`127.0.0.1:${port}`);
      assert.equal(t.status, 200, t.head);
      const down = await drainHash(t.socket); // the server's FIN arrived
      assert.deepEqual(down, { sha256: sha256Of('server-first', BYTES), bytes: BYTES });
      await sendStream(t.socket, 'client-after-server-fin', BYTES);
      assert.deepEqual(await got, { sha256: sha256Of('client-after-server-fin', BYTES), bytes: BYTES });
    }
  },
});
