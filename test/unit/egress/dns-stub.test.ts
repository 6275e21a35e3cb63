// The transparent egress DNS stub (src/egress/dns-stub.ts): which names get answers, which answers are
// kept, what is bound, and the wire (UDP and TCP on a loopback port).
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { connect } from 'node:net';
import { test } from 'node:test';
import dnsPacket from 'dns-packet';
import type { Resolved } from '../../../src/egress/dns-resolvers.ts';
import { createDnsAnswerer, judgeName, startDnsStub } from '../../../src/egress/dns-stub.ts';
import { NameBindings } from '../../../src/egress/name-bindings.ts';
import { DnsResolveError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { compilePolicy } from '../../../src/policy/policy.ts';
import { quietLogger } from '../../helpers/egress-fixture.ts';

const policy = compilePolicy(
  ['api.example.com:443', '**.wild.example', 'db.example.com:5432', 'partly.example'],
  ['10.0.0.0/8', 'bad.wild.example', '192.0.2.66:443'],
);

function stub(answers: Record<string, Resolved | Error>) {
  const asked: string[] = [];
  const bindings = new NameBindings();
  const answer = createDnsAnswerer({
    policy,
    bindings,
    logger: quietLogger(),
    resolve: async (name) => {
      asked.push(name);
      const a = answers[name];
      if (!a) throw new DnsResolveError(`no answer for ${name}`);
      if (a instanceof Error) throw a;
      return a;
    },
  });
  return { answer, asked, bindings };
}

function query(name: string, type = 'A', id = 7): Buffer {
  return dnsPacket.encode({
    type: 'query',
    id,
    flags: dnsPacket.RECURSION_DESIRED,
    questions: [{ type: type as dnsPacket.RecordType, name }],
  });
}

/** What the tests read of an answer (dns-packet's types leave out rcode). */
interface Reply {
  id?: number;
  rcode: string;
  flag_rd: boolean;
  answers?: { name: string; type: string; ttl?: number; data: unknown }[];
}

async function ask(answer: (q: Buffer, udp: boolean) => Promise<Buffer | null>, q: Buffer): Promise<Reply> {
  const out = await answer(q, true);
  assert.ok(out, 'an answer');
  return dnsPacket.decode(out) as unknown as Reply;
}

test('judgeName: a name is allowed when some port allows it; deny rules and other ports are weighed', () => {
  assert.equal(judgeName(policy, 'api.example.com').allowed, true);
  assert.equal(judgeName(policy, 'db.example.com').decision.rule, 'db.example.com:5432');
  assert.equal(judgeName(policy, 'x.y.wild.example').allowed, true);
  const bad = judgeName(policy, 'bad.wild.example');
  assert.equal(bad.allowed, false);
  assert.equal(bad.decision.rule, 'bad.wild.example', 'the deny rule is reported');
  assert.equal(judgeName(policy, 'evil.example').decision.rule, null);
});

test('an allowed name is answered with the resolver addresses, bound to it, TTL capped at 300 s', async () => {
  const { answer, bindings } = stub({
    'api.example.com': { addresses: ['198.51.100.1', '198.51.100.2'], ttl: 86400 },
  });
  const r = await ask(answer, query('API.example.com'));
  assert.equal(r.rcode, 'NOERROR');
  assert.equal(r.id, 7);
  assert.equal(r.flag_rd, true);
  assert.deepEqual(
    r.answers?.map((a) => [a.name, a.type, a.data, a.ttl]),
    [
      ['API.example.com', 'A', '198.51.100.1', 300],
      ['API.example.com', 'A', '198.51.100.2', 300],
    ],
  );
  assert.deepEqual(bindings.namesFor('198.51.100.2'), ['api.example.com']);
});

test('a name no rule allows, or a deny rule denies, gets REFUSED and is never resolved', async () => {
  const { answer, asked } = stub({});
  for (const name of ['evil.example', 'bad.wild.example', 'localhost', '1.2.3.4.in-addr.arpa']) {
    const r = await ask(answer, query(name));
    assert.equal(r.rcode, 'REFUSED', name);
    assert.deepEqual(r.answers, []);
  }
  assert.deepEqual(asked, []);
});

test('answers in denied ranges, loopback and unspecified are dropped (and never bound)', async () => {
  const { answer, bindings } = stub({
    'x.wild.example': { addresses: ['10.1.2.3', '127.0.0.1', '0.0.0.0', '203.0.113.5'], ttl: 30 },
  });
  const r = await ask(answer, query('x.wild.example'));
  assert.deepEqual(
    r.answers?.map((a) => a.data),
    ['203.0.113.5'],
  );
  assert.deepEqual(bindings.namesFor('10.1.2.3'), []);
  assert.deepEqual(bindings.namesFor('127.0.0.1'), []);
});

test('a port-specific deny rule drops an answer only if every allowed port is denied', async () => {
  // partly.example is allowed on any port; 192.0.2.66 is denied on 443 only: kept (other ports work).
  const { answer } = stub({ 'partly.example': { addresses: ['192.0.2.66'], ttl: 30 } });
  const r = await ask(answer, query('partly.example'));
  assert.deepEqual(
    r.answers?.map((a) => a.data),
    ['192.0.2.66'],
  );
  // api.example.com is allowed on 443 only: the same address is dropped for it.
  const two = stub({ 'api.example.com': { addresses: ['192.0.2.66'], ttl: 30 } });
  assert.deepEqual((await ask(two.answer, query('api.example.com'))).answers, []);
});

test('AAAA and other types of an allowed name: NOERROR with no data (IPv6 is refused), no resolution', async () => {
  const { answer, asked } = stub({});
  for (const type of ['AAAA', 'MX', 'TXT', 'HTTPS'] as const) {
    const r = await ask(answer, query('api.example.com', type));
    assert.equal(r.rcode, 'NOERROR', type);
    assert.deepEqual(r.answers, []);
  }
  assert.deepEqual(asked, []);
});

test('NXDOMAIN passes through; a resolver failure is SERVFAIL and is not cached', async () => {
  const { answer, asked } = stub({
    'api.example.com': { addresses: [], ttl: 30, nxdomain: true },
    'db.example.com': new DnsResolveError('relay unreachable'),
  });
  assert.equal((await ask(answer, query('api.example.com'))).rcode, 'NXDOMAIN');
  assert.equal((await ask(answer, query('db.example.com'))).rcode, 'SERVFAIL');
  assert.equal((await ask(answer, query('db.example.com'))).rcode, 'SERVFAIL');
  assert.deepEqual(asked.filter((n) => n === 'db.example.com').length, 2);
});

test('answers are cached for their TTL: a burst of the same question resolves once', async () => {
  const { answer, asked } = stub({ 'api.example.com': { addresses: ['198.51.100.1'], ttl: 60 } });
  await Promise.all(Array.from({ length: 20 }, () => ask(answer, query('api.example.com'))));
  await ask(answer, query('api.example.com'));
  assert.equal(asked.length, 1);
});

test('malformed input: garbage is dropped or FORMERR, responses are ignored, two questions FORMERR', async () => {
  const { answer } = stub({});
  assert.equal(await answer(Buffer.from('hi'), true), null);
  const garbage = Buffer.concat([Buffer.from([0x12, 0x34, 1, 0, 0, 5]), Buffer.alloc(10, 0xff)]);
  const formerr = dnsPacket.decode((await answer(garbage, true))!) as unknown as Reply;
  assert.equal(formerr.rcode, 'FORMERR');
  assert.equal(formerr.id, 0x1234);
  const response = dnsPacket.encode({ type: 'response', id: 1, questions: [{ type: 'A', name: 'a.b' }] });
  assert.equal(await answer(response, true), null);
  const two = dnsPacket.encode({
    type: 'query',
    id: 2,
    questions: [
      { type: 'A', name: 'api.example.com' },
      { type: 'A', name: 'evil.example' },
    ],
  });
  assert.equal((await ask(answer, two)).rcode, 'FORMERR');
});

test('a refused name is logged once a minute however often it is asked (every refusal is counted)', async () => {
  const lines: string[] = [];
  let t = 0;
  const answer = createDnsAnswerer({
    policy,
    bindings: new NameBindings(),
    now: () => t,
    logger: createLogger({ level: 'warn', destination: { write: (l: string) => void lines.push(l) } }),
    resolve: async () => assert.fail('a refused name is never resolved'),
  });
  for (let i = 0; i < 50; i++) await answer(query('evil.example', i % 2 ? 'A' : 'AAAA'), true);
  await answer(query('other-evil.example'), true);
  assert.equal(lines.filter((l) => l.includes('dns refused: evil.example')).length, 1);
  assert.equal(lines.filter((l) => l.includes('dns refused: other-evil.example')).length, 1);
  t += 61_000;
  await answer(query('evil.example'), true);
  assert.equal(lines.filter((l) => l.includes('dns refused: evil.example')).length, 2);
  assert.match(lines[0]!, /"rule":null/);
});

test('the stub serves UDP and TCP (length-prefixed, two queries on one connection)', async (t) => {
  const { answer } = stub({ 'api.example.com': { addresses: ['198.51.100.1'], ttl: 60 } });
  const server = await startDnsStub(answer, { port: 0, logger: quietLogger() });
  t.after(() => server.close());
  const udp = createSocket('udp4');
  t.after(() => udp.close());
  const viaUdp = await new Promise<Buffer>((resolve) => {
    udp.once('message', resolve);
    udp.send(query('api.example.com'), server.port, '127.0.0.1');
  });
  assert.deepEqual(
    (dnsPacket.decode(viaUdp) as unknown as Reply).answers?.map((a) => a.data),
    ['198.51.100.1'],
  );

  const sock = connect(server.port, '127.0.0.1');
  t.after(() => sock.destroy());
  const frame = (q: Buffer) => Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
  sock.write(Buffer.concat([frame(query('api.example.com', 'A', 1)), frame(query('evil.example', 'A', 2))]));
  const got: dnsPacket.Packet[] = [];
  let buf = Buffer.alloc(0);
  await new Promise<void>((resolve) => {
    sock.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        got.push(dnsPacket.decode(buf.subarray(2, 2 + buf.readUInt16BE(0))));
        buf = buf.subarray(2 + buf.readUInt16BE(0));
      }
      if (got.length === 2) resolve();
    });
  });
  const byId = new Map(got.map((p) => [p.id, p as unknown as Reply]));
  assert.equal(byId.get(1)?.rcode, 'NOERROR');
  assert.equal(byId.get(2)?.rcode, 'REFUSED');
});

test('a TCP client that pipelines queries and never reads the answers is cut off', async (t) => {
  const many = Array.from({ length: 64 }, (_, i) => `198.51.100.${i + 1}`);
  const { answer } = stub({ 'api.example.com': { addresses: many, ttl: 60 } });
  const server = await startDnsStub(answer, { port: 0, logger: quietLogger() });
  t.after(() => server.close());
  const sock = connect(server.port, '127.0.0.1');
  t.after(() => sock.destroy());
  sock.on('error', () => {});
  sock.pause(); // not reading: ~2 KiB per answer piles up in the kernel, then on the stub's side
  const q = query('api.example.com');
  const frame = Buffer.concat([Buffer.from([q.length >> 8, q.length & 0xff]), q]);
  const sent = 20_000;
  for (let i = 0; i < 40; i++) sock.write(Buffer.concat(Array.from({ length: sent / 40 }, () => frame)));
  // Past the kernel's buffers (a few MiB on loopback) and 1 MiB more, the stub cuts the connection.
  await new Promise((r) => setTimeout(r, 3000));
  let bytes = 0;
  sock.on('data', (d: Buffer) => {
    bytes += d.length;
  });
  await new Promise<void>((resolve) => {
    sock.once('close', () => resolve());
    sock.resume();
  });
  const oneAnswer = (await answer(q, false))!.length + 2;
  assert.ok(bytes < sent * oneAnswer, `got ${bytes} bytes, all ${sent} answers would be ${sent * oneAnswer}`);
});
