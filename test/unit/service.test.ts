// src/service.ts: close() is graceful with a deadline, destroy() aborts, both idempotent, in any order.
// Real loopback sockets: a net server whose connections are tracked in a ConnectionSet.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { test } from 'node:test';
import { ConnectionSet, closeServer, trackConnections } from '../../src/connections.ts';
import { serviceLifetime } from '../../src/service.ts';

async function echoService(graceMs: number) {
  const server = createServer((s) => s.pipe(s));
  const connections = new ConnectionSet();
  trackConnections(server, connections);
  const lifetime = serviceLifetime({ stopAccepting: () => closeServer(server), connections, graceMs });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const client = async (): Promise<Socket> => {
    const s = connect(port, '127.0.0.1');
    await once(s, 'connect');
    s.write('x');
    await once(s, 'data');
    return s;
  };
  return { server, port, lifetime, connections, client };
}

test('close() lets a connection in flight finish within the grace, refuses new ones, and is idempotent', async () => {
  const svc = await echoService(10_000);
  const c = await svc.client();
  const first = svc.lifetime.close();
  assert.equal(svc.lifetime.close(), first, 'a second close() returns the same promise');
  assert.equal(svc.lifetime.closing, true);
  const refused = connect(svc.port, '127.0.0.1');
  const [err] = (await once(refused, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
  // Still served: the echo answers during the grace period.
  c.write('y');
  assert.equal(String((await once(c, 'data'))[0]), 'y');
  let done = false;
  void first.then(() => {
    done = true;
  });
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(done, false, 'close() waits for the connection in flight');
  c.end();
  await first;
  assert.equal(svc.connections.size, 0);
  assert.equal(svc.server.listening, false);
});

test('close() cuts off what is left when the grace period ends', async () => {
  const svc = await echoService(100);
  const c = await svc.client();
  const closed = once(c, 'close');
  await svc.lifetime.close();
  await closed;
  assert.equal(svc.connections.size, 0);
});

test('destroy() during a close() cuts the grace short; destroy() and close() after it resolve too', async () => {
  const svc = await echoService(60_000);
  const c = await svc.client();
  const closing = svc.lifetime.close();
  const destroyed = svc.lifetime.destroy(new Error('abort'));
  assert.equal(destroyed, closing, 'destroy() settles the same close');
  await once(c, 'close');
  await closing;
  await svc.lifetime.destroy();
  await svc.lifetime.close();
});

test('destroy() first: connections added afterwards are destroyed at once', async () => {
  const svc = await echoService(60_000);
  await svc.lifetime.destroy();
  const late = new ConnectionSet();
  late.destroyAll();
  const s = connect(svc.port, '127.0.0.1');
  s.on('error', () => {});
  late.add(s);
  assert.equal(s.destroyed, true);
});
