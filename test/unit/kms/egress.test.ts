// dialThrough: the KMS proxy's CONNECT through the egress proxy, on Node's own client. Against a raw TCP
// stand-in for the egress proxy: the bytes that arrive with the 200 reply are the tunnel's first bytes,
// a refusal carries its status line and reason, a proxy that never answers is a timeout, and a closed
// port is an EgressError naming the egress proxy.
import assert from 'node:assert/strict';
import { createServer, type Server, type Socket } from 'node:net';
import { test } from 'node:test';
import { dialThrough, EgressError } from '../../../src/kms/egress.ts';
import { freePort } from '../../helpers/kms-harness.ts';

/** A TCP server that hands each connection's first chunk (the CONNECT head) to `onHead`. */
async function fakeProxy(
  onHead: (head: string, sock: Socket) => void,
): Promise<{ server: Server; port: number }> {
  const server = createServer((sock) => {
    sock.on('error', () => {});
    sock.once('data', (d: Buffer) => onHead(d.toString('latin1'), sock));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port };
}

function readSome(sock: Socket): Promise<string> {
  return new Promise((resolve) => sock.once('data', (d: Buffer) => resolve(d.toString())));
}

test('dialThrough: the CONNECT names the target, and bytes sent with the 200 reach the tunnel first', async (t) => {
  let head = '';
  const p = await fakeProxy((h, sock) => {
    head = h;
    sock.write('HTTP/1.1 200 Connection Established\r\n\r\nserver-first');
    sock.on('data', (d: Buffer) => sock.write(`echo:${d}`));
  });
  t.after(() => p.server.close());
  const sock = await dialThrough(
    { host: '127.0.0.1', port: p.port },
    'kms.us-east-1.amazonaws.com',
    443,
    2000,
  );
  t.after(() => sock.destroy());
  assert.match(head, /^CONNECT kms\.us-east-1\.amazonaws\.com:443 HTTP\/1\.1\r\n/);
  assert.match(head, /\r\nhost: kms\.us-east-1\.amazonaws\.com:443\r\n/i);
  assert.equal(await readSome(sock), 'server-first');
  sock.write('ping');
  assert.equal(await readSome(sock), 'echo:ping');
  // An IPv6 literal is bracketed in the authority.
  const v6 = await dialThrough({ host: '127.0.0.1', port: p.port }, '2001:db8::1', 8443, 2000);
  v6.destroy();
  assert.match(head, /^CONNECT \[2001:db8::1\]:8443 HTTP\/1\.1\r\n/);
});

test('dialThrough: a refusal, silence and a closed port are EgressErrors that say which', async (t) => {
  const refusing = await fakeProxy((_h, sock) =>
    sock.end(
      'HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\nx-cloister-error: CLO_ERR_EGRESS_DENIED\r\n\r\negress denied: no rule allows evil.example:443\n',
    ),
  );
  t.after(() => refusing.server.close());
  await assert.rejects(
    dialThrough({ host: '127.0.0.1', port: refusing.port }, 'evil.example', 443, 2000),
    (err) => {
      assert.ok(err instanceof EgressError);
      assert.equal(err.timeout, false);
      assert.match(
        err.message,
        /^egress proxy refused CONNECT evil\.example:443: HTTP\/1\.1 403 Forbidden \(egress denied: no rule allows evil\.example:443\)$/,
      );
      return true;
    },
  );

  const silent = await fakeProxy(() => {});
  t.after(() => silent.server.close());
  await assert.rejects(
    dialThrough({ host: '127.0.0.1', port: silent.port }, 'kms.example', 443, 300),
    (err) => {
      assert.ok(err instanceof EgressError);
      assert.equal(err.timeout, true);
      assert.match(err.message, /timed out connecting to kms\.example:443/);
      return true;
    },
  );

  const closed = await freePort();
  await assert.rejects(dialThrough({ host: '127.0.0.1', port: closed }, 'kms.example', 443, 2000), (err) => {
    assert.ok(err instanceof EgressError);
    assert.equal(err.timeout, false);
    assert.match(
      err.message,
      new RegExp(`cannot connect to the egress proxy 127\\.0\\.0\\.1:${closed}: .*ECONNREFUSED`),
    );
    return true;
  });
});
