// The relay's resolve request (src/egress/protocol.ts, relay.ts), which transparent egress's DNS stub
// sends with `transparent.resolver: relay`: its frames, the relay's answers, and old peers.
import assert from 'node:assert/strict';
import type { Socket } from 'node:net';
import { test } from 'node:test';
import { relayResolver } from '../../../src/egress/dns-resolvers.ts';
import {
  encodeResolveRequest,
  encodeResolveResponse,
  FrameError,
  parseRelayRequest,
  parseRequest,
  parseResolveResponse,
} from '../../../src/egress/protocol.ts';
import { startEgressRelay } from '../../../src/egress/relay.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { EGRESS_VSOCK_PORT } from '../../../src/transport/types.ts';
import { quietLogger, tempDir } from '../../helpers/egress-fixture.ts';

test('resolve frames: the request and both replies, and what a connect-only peer makes of them', () => {
  const req = encodeResolveRequest('example.com');
  assert.equal(req.subarray(2).toString(), '{"resolve":"example.com"}');
  assert.deepEqual(parseRelayRequest(req.subarray(2)), { resolve: 'example.com' });
  // A relay that only knows connect requests refuses it as a bad request (Err 22 on the wire).
  assert.throws(() => parseRequest(req.subarray(2)), FrameError);
  // A connect request is still a connect request.
  assert.deepEqual(parseRelayRequest(Buffer.from('{"host":"a.b","port":1}')), { host: 'a.b', port: 1 });
  const ok = encodeResolveResponse({ ok: true, addresses: ['192.0.2.1'], ttl: 60 });
  assert.equal(ok.subarray(2).toString(), '{"Resolved":{"addresses":["192.0.2.1"],"ttl":60}}');
  assert.deepEqual(parseResolveResponse(ok.subarray(2)), { ok: true, addresses: ['192.0.2.1'], ttl: 60 });
  const nx = encodeResolveResponse({ ok: true, addresses: [], ttl: 30, nxdomain: true });
  assert.deepEqual(parseResolveResponse(nx.subarray(2)), {
    ok: true,
    addresses: [],
    ttl: 30,
    nxdomain: true,
  });
  const err = encodeResolveResponse({ ok: false, os_code: 22, message: 'bad request' });
  assert.deepEqual(parseResolveResponse(err.subarray(2)), { ok: false, os_code: 22, message: 'bad request' });
});

test('a hostile resolve reply is refused: non-IPv4 addresses, too many, a bad TTL, "Ok"', () => {
  const bad = [
    '{"Resolved":{"addresses":["::1"],"ttl":1}}',
    '{"Resolved":{"addresses":["1.2.3"],"ttl":1}}',
    '{"Resolved":{"addresses":[1],"ttl":1}}',
    `{"Resolved":{"addresses":${JSON.stringify(Array(65).fill('192.0.2.1'))},"ttl":1}}`,
    '{"Resolved":{"addresses":[],"ttl":-1}}',
    '{"Resolved":{"addresses":[],"ttl":1.5}}',
    '{"Resolved":{"addresses":[]}}',
    '"Ok"',
    '[]',
  ];
  for (const text of bad) assert.throws(() => parseResolveResponse(Buffer.from(text)), FrameError, text);
  assert.throws(() => parseRelayRequest(Buffer.from('{"resolve":""}')), FrameError);
  assert.throws(() => parseRelayRequest(Buffer.from(`{"resolve":"${'a'.repeat(254)}"}`)), FrameError);
});

async function relayWith(
  t: import('node:test').TestContext,
  resolve: (name: string) => Promise<{ address: string; ttl: number }[]>,
) {
  const dir = tempDir(t, 'cloister-vsock-');
  const relay = await startEgressRelay(
    {},
    { transport: new EmulatedTransport(dir, 2), logger: quietLogger(), resolve },
  );
  t.after(() => relay.close());
  const enclave = new EmulatedTransport(dir, 16);
  return relayResolver(() => enclave.connect(2, EGRESS_VSOCK_PORT) as Promise<Socket>, 2000);
}

test('the relay answers resolve requests: addresses, the smallest TTL, NXDOMAIN and no data', async (t) => {
  const asked: string[] = [];
  const resolver = await relayWith(t, async (name) => {
    asked.push(name);
    if (name === 'two.example')
      return [
        { address: '192.0.2.1', ttl: 90 },
        { address: '192.0.2.2', ttl: 30 },
        { address: '192.0.2.1', ttl: 90 },
      ];
    if (name === 'nodata.example') throw Object.assign(new Error('no data'), { code: 'ENODATA' });
    throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  });
  assert.deepEqual(await resolver.resolve4('Two.Example.'), {
    ok: true,
    addresses: ['192.0.2.1', '192.0.2.2'],
    ttl: 30,
  });
  assert.deepEqual(await resolver.resolve4('missing.example'), {
    ok: true,
    addresses: [],
    ttl: 30,
    nxdomain: true,
  });
  assert.deepEqual(await resolver.resolve4('nodata.example'), { ok: true, addresses: [], ttl: 30 });
  assert.deepEqual(asked, ['two.example', 'missing.example', 'nodata.example'], 'names are normalised');
});

test('a resolver failure on the host, or no relay at all, is a DnsResolveError (SERVFAIL)', async (t) => {
  const resolver = await relayWith(t, async () => {
    throw Object.assign(new Error('server failure'), { code: 'ESERVFAIL' });
  });
  await assert.rejects(resolver.resolve4('a.example'), { code: 'CLO_ERR_DNS_RESOLVE', message: /os_err 0/ });
  const nobody = new EmulatedTransport(tempDir(t, 'cloister-vsock-'), 16);
  const lonely = relayResolver(() => nobody.connect(2, EGRESS_VSOCK_PORT) as Promise<Socket>, 500);
  await assert.rejects(lonely.resolve4('a.example'), { code: 'CLO_ERR_DNS_RESOLVE' });
});
