// claimedName (src/egress/first-bytes-name.ts): the name a connection's first bytes give, for
// transparent egress's `check_sni`. Real ClientHellos from Node's TLS client, and hostile bytes.
import assert from 'node:assert/strict';
import { type AddressInfo, createServer } from 'node:net';
import { test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { claimedName } from '../../../src/egress/first-bytes-name.ts';
import { seededRandom } from '../../helpers/seeded-random.ts';

/** The first bytes Node's TLS client sends for `servername` (a real ClientHello). */
async function clientHello(servername?: string): Promise<Buffer> {
  const server = createServer();
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (s) => s.once('data', (d: Buffer) => (resolve(d), s.destroy()))),
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const c = tlsConnect({
    port: (server.address() as AddressInfo).port,
    host: '127.0.0.1',
    ...(servername ? { servername } : {}),
  });
  c.on('error', () => {});
  const bytes = await got;
  c.destroy();
  server.close();
  return bytes;
}

test('the SNI of a real ClientHello, lowercased; none when the client sends no SNI', async () => {
  assert.equal(claimedName(await clientHello('API.Example.com')), 'api.example.com');
  assert.equal(claimedName(await clientHello()), null);
});

test('the Host of an HTTP/1 request head, without its port', () => {
  const req = (host: string) => Buffer.from(`GET /x HTTP/1.1\r\nAccept: */*\r\nHost: ${host}\r\n\r\n`);
  assert.equal(claimedName(req('Example.com')), 'example.com');
  assert.equal(claimedName(req('example.com:8080')), 'example.com');
  assert.equal(claimedName(req('[2001:db8::1]:80')), '2001:db8::1');
  assert.equal(claimedName(Buffer.from('GET / HTTP/1.1\r\nHost: a.example')), null, 'an incomplete head');
  assert.equal(claimedName(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n')), null);
});

test('truncated and random bytes give null, never a throw', async (t) => {
  const hello = await clientHello('a.example');
  for (let n = 0; n < hello.length; n++) {
    const r = claimedName(hello.subarray(0, n));
    assert.ok(r === null || r === 'a.example', `cut at ${n}: ${r}`);
  }
  const rnd = seededRandom(t);
  for (let i = 0; i < 3000; i++) {
    const b = Buffer.from(hello);
    for (let k = rnd.int(1, 8); k > 0; k--) b[rnd.int(0, b.length - 1)] = rnd.int(0, 255);
    claimedName(b);
    claimedName(rnd.bytes(rnd.int(0, 80)));
  }
});
