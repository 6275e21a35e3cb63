// Ingress on the per-connection fast path (src/transport/fast.ts): on a plain port, neither the host
// side nor the enclave side makes a net.Socket for a connection (accept -> connect -> splice pump), and
// the bytes, half-close and answer are what the Node path (CLOISTER_CONNECTION_PATH=node) gives.
import assert from 'node:assert/strict';
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { startIngress } from '../../../src/ingress/enclave.ts';
import { startHostIngress } from '../../../src/ingress/host.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';

const logger = createLogger({ level: 'silent' });

/** app (counts bytes until FIN, answers the count) <- enclave side <- emulated vsock <- host side. */
async function chain(t: TestContext, path: 'native' | 'node'): Promise<number> {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-ingress-fast-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const app = createServer({ allowHalfOpen: true }, (s) => {
    let n = 0;
    s.on('data', (d) => {
      n += d.length;
    });
    s.on('end', () => s.end(`got ${n}`));
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  t.after(() => app.close());
  const port = (app.address() as { port: number }).port;
  const before = process.env.CLOISTER_CONNECTION_PATH;
  process.env.CLOISTER_CONNECTION_PATH = path;
  try {
    const enclave = await startIngress(
      { ports: [{ port, secureContext: null }], proxyProtocol: false, upstreamRetryMs: 2000 },
      { transport: new EmulatedTransport(dir, 16), logger },
    );
    const host = await startHostIngress(
      { ports: [{ enclavePort: port, hostPort: 0 }], listenAddress: '127.0.0.1', proxyProtocol: false },
      { transport: new EmulatedTransport(dir, 2), enclaveCid: 16, logger },
    );
    t.after(async () => {
      await host.close();
      await enclave.close();
    });
    return host.addresses().get(port)!.port;
  } finally {
    if (before === undefined) delete process.env.CLOISTER_CONNECTION_PATH;
    else process.env.CLOISTER_CONNECTION_PATH = before;
  }
}

/** Sends `bytes`, half-closes, returns the app's answer; counts the Sockets Node's servers made meanwhile. */
async function exchange(hostPort: number, bytes: number): Promise<{ answer: string; sockets: number }> {
  let sockets = 0;
  const onSocket = () => {
    sockets++;
  };
  subscribe('net.server.socket', onSocket);
  try {
    const s: Socket = connect({ port: hostPort, host: '127.0.0.1', allowHalfOpen: true });
    let answer = '';
    s.on('data', (d) => {
      answer += d;
    });
    await new Promise((r) => s.once('connect', r));
    s.end(Buffer.alloc(bytes, 7));
    await new Promise((r) => s.once('close', r));
    return { answer, sockets };
  } finally {
    unsubscribe('net.server.socket', onSocket);
  }
}

test('ingress fast path: no net.Socket on either side of a plain port; same bytes and half-close as Node', async (t) => {
  const fast = await chain(t, 'native');
  const node = await chain(t, 'node');
  for (const bytes of [1, 300_000]) {
    assert.deepEqual(await exchange(fast, bytes), { answer: `got ${bytes}`, sockets: 1 }, 'only the app');
    assert.deepEqual(
      await exchange(node, bytes),
      { answer: `got ${bytes}`, sockets: 3 },
      'host, enclave, app',
    );
  }
});
