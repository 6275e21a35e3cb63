// The vsock wire protocol, byte for byte as Enclaver speaks it, and the host relay against hostile
// or old peers. Dials go to loopback only.
import assert from 'node:assert/strict';
import { connect as netConnect, type Socket } from 'node:net';
import { test } from 'node:test';
import {
  encodeFrame,
  encodeRequest,
  encodeResponse,
  FrameError,
  parseRequest,
  parseResponse,
  readFrame,
} from '../../../src/egress/protocol.ts';
import { startEgressRelay } from '../../../src/egress/relay.ts';
import { EmulatedTransport, socketPath } from '../../../src/transport/emulated.ts';
import { EGRESS_VSOCK_PORT } from '../../../src/transport/types.ts';
import {
  connectTunnel,
  deadPort,
  quietLogger,
  startPath,
  startTcp,
  tempDir,
} from '../../helpers/egress-fixture.ts';
import { seededRandom } from '../../helpers/seeded-random.ts';

test('frames are byte-identical to Enclaver (docs/reference/enclaver.md, "Egress wire protocol")', () => {
  const req = encodeRequest({ host: 'example.com', port: 443 });
  assert.equal(req.toString('hex', 0, 2), '2100');
  assert.equal(req.subarray(2).toString(), '{"host":"example.com","port":443}');
  assert.equal(encodeResponse({ ok: true }).toString('hex'), '0400224f6b22');
  const err = encodeResponse({ ok: false, os_code: 111, message: 'Connection refused (os error 111)' });
  assert.equal(err.readUInt16LE(0), 0x45);
  assert.equal(
    err.subarray(2).toString(),
    '{"Err":{"os_code":111,"message":"Connection refused (os error 111)"}}',
  );
  assert.deepEqual(parseResponse(err.subarray(2)), {
    ok: false,
    os_code: 111,
    message: 'Connection refused (os error 111)',
  });
  assert.throws(() => encodeFrame('x'.repeat(70_000)), /exceeds 65535/);
  assert.throws(() => parseResponse(Buffer.from('"Okay"')), /neither/);
});

test('frame parsers: random and mutated input only ever yields a value or a FrameError', (t) => {
  const rnd = seededRandom(t);
  const seeds = [
    '{"host":"example.com","port":443}',
    '{"host":"a","port":1,"deny_ips":["10.0.0.0/8"]}',
    '"Ok"',
    '{"Err":{"os_code":111,"message":"x"}}',
  ].map((x) => Buffer.from(x));
  for (let i = 0; i < 5000; i++) {
    let buf: Buffer;
    if (i % 2 === 0) buf = rnd.bytes(rnd.int(1, 64));
    else {
      buf = Buffer.from(seeds[i % seeds.length]!);
      for (let k = rnd.int(1, 4); k > 0; k--) buf[rnd.int(0, buf.length)] = rnd.int(0, 256);
    }
    for (const parse of [parseRequest, parseResponse]) {
      try {
        const v = parse(buf);
        assert.equal(typeof v, 'object');
      } catch (e) {
        assert.ok(
          e instanceof FrameError,
          `${parse.name}(${buf.toString('hex')}) threw ${e} (seed ${rnd.seed})`,
        );
      }
    }
  }
});

async function relayPath(
  t: import('node:test').TestContext,
  opts: { allow?: string[]; deny?: string[] } = {},
) {
  const dir = tempDir(t, 'cloister-vsock-');
  const relay = await startEgressRelay(opts, {
    transport: new EmulatedTransport(dir, 2),
    logger: quietLogger(),
  });
  t.after(() => relay.close());
  return dir;
}

function openRaw(dir: string): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = netConnect({ path: socketPath(dir, 2, EGRESS_VSOCK_PORT), allowHalfOpen: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

test('relay: an Enclaver-style enclave side (raw frame, bracketed IPv6) gets "Ok" then raw bytes', async (t) => {
  const echo = await startTcp(t, (s) => s.pipe(s));
  const echo6 = await startTcp(t, (s) => s.pipe(s), '::1');
  const dir = await relayPath(t);
  for (const host of ['127.0.0.1', '[::1]', 'host']) {
    const s = await openRaw(dir);
    const port = host === '[::1]' ? echo6 : echo;
    // Request and first payload in one write: the relay must keep the bytes after the frame.
    s.write(Buffer.concat([encodeFrame({ host, port }), Buffer.from(`early ${host}`)]));
    const reply = await readFrame(s, 5000);
    assert.equal(reply.toString(), '"Ok"');
    s.end(' late');
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.resume();
    await new Promise((r) => s.on('end', r));
    assert.equal(Buffer.concat(chunks).toString(), `early ${host} late`);
    s.destroy();
  }
});

test('relay: errors come back as {"Err":{os_code,message}} and hostile frames never crash it', async (t) => {
  const closed = await deadPort();
  const dir = await relayPath(t, { deny: ['10.0.0.0/8', 'blocked.test'] });
  const ask = async (raw: Buffer) => {
    const s = await openRaw(dir);
    s.write(raw);
    try {
      return parseResponse(await readFrame(s, 5000));
    } finally {
      s.destroy();
    }
  };
  const refused = await ask(encodeFrame({ host: '127.0.0.1', port: closed }));
  assert.deepEqual(refused.ok ? null : refused.os_code, 111);
  assert.match(refused.ok ? '' : refused.message, /^Connection refused \(os error 111\)/);
  const hostDenied = await ask(encodeFrame({ host: 'blocked.test', port: 80 }));
  assert.match(
    hostDenied.ok ? '' : `${hostDenied.os_code} ${hostDenied.message}`,
    /^13 denied by the host's egress policy/,
  );
  // Denied on the host side before any dial: a numeric spelling of 10.x is read as 10.x.
  const numeric = await ask(encodeFrame({ host: '167772161', port: 80 }));
  assert.match(numeric.ok ? '' : numeric.message, /denied by rule '10\.0\.0\.0\/8'/);
  const hostile: [Buffer, RegExp][] = [
    [Buffer.from([0, 0]), /empty frame/],
    [Buffer.concat([Buffer.from([5, 0]), Buffer.from('{{{{{')]), /not valid JSON/],
    [encodeFrame({ host: 'x.test' }), /"port"/],
    [encodeFrame({ host: '127.0.0.1', port: 70000 }), /"port"/],
    [encodeFrame(['host', 1]), /not a JSON object/],
    [encodeFrame({ host: '127.0.0.1', port: 1, deny_ips: 'all' }), /deny_ips/],
    [encodeFrame({ host: '127.0.0.1', port: 1, deny_ips: ['not-a-cidr'] }), /not a CIDR/],
    [encodeFrame({ host: 'a b', port: 1 }), /invalid host/],
    [encodeFrame('x'.repeat(65533)), /not a JSON object/],
  ];
  for (const [raw, why] of hostile) {
    const r = await ask(raw);
    assert.equal(r.ok, false);
    assert.match(r.ok ? '' : `${r.os_code} ${r.message}`, /^22 /);
    assert.match(r.ok ? '' : r.message, why);
  }
  // A peer that sends half a frame and hangs up leaves the relay serving others.
  const s = await openRaw(dir);
  s.end(Buffer.from([200, 0, 123]));
  s.resume();
  await new Promise((r) => s.on('close', r));
  assert.equal((await ask(encodeFrame({ host: '127.0.0.1', port: closed }))).ok, false);
});

test('proxy: works against a host side that speaks only the plain protocol (ignores deny_ips)', async (t) => {
  const echo = await startTcp(t, (s) => s.pipe(s));
  const path = await startPath(t, { allow: ['127.0.0.1'], deny: ['10.0.0.0/8'] }, { noRelay: true });
  // A minimal Enclaver-like relay: parse {"host","port"} (serde ignores unknown fields), dial, "Ok".
  const seen: unknown[] = [];
  const server = await new EmulatedTransport(path.vsockDir, 2).listen(EGRESS_VSOCK_PORT);
  t.after(() => server.close());
  server.on('connection', async (s: Socket) => {
    const req = JSON.parse((await readFrame(s, 5000)).toString());
    seen.push(req);
    const up = netConnect({ host: req.host, port: req.port }, () => {
      s.write(Buffer.from([4, 0, ...Buffer.from('"Ok"')]));
      s.pipe(up).pipe(s);
    });
  });
  const tunnel = await connectTunnel(path.proxyPort, `127.0.0.1:${echo}`);
  tunnel.end('plain');
  const chunks: Buffer[] = [];
  tunnel.on('data', (d: Buffer) => chunks.push(d));
  tunnel.resume();
  await new Promise((r) => tunnel.on('end', r));
  assert.equal(Buffer.concat(chunks).toString(), 'plain');
  assert.deepEqual(seen, [{ host: '127.0.0.1', port: echo, deny_ips: ['10.0.0.0/8'] }]);
});
