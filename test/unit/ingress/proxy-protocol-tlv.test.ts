// PROXY v2 TLVs from the host (ALPN, authority, the SSL TLV that claims a verified client certificate,
// AWS's VPC endpoint TLV...) are the host's word, and the host is untrusted: the app gets the header with
// every TLV stripped, or only the types cloister.yaml's ingress.proxy_protocol_tlvs lists. The host side
// is played by the test over the emulated vsock; the app is a TCP server that records what it receives.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { startIngress } from '../../../src/ingress/enclave.ts';
import { decodeProxyV2, encodeProxyV2, PPV2_SIGNATURE } from '../../../src/ingress/proxy-protocol.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { freePort } from '../../helpers/fixtures/ports.ts';

const logger = createLogger({ level: 'silent' });

function tlv(type: number, value: Buffer | string): Buffer {
  const v = Buffer.from(value);
  const head = Buffer.alloc(3);
  head[0] = type;
  head.writeUInt16BE(v.length, 1);
  return Buffer.concat([head, v]);
}

/** A PROXY v2 header for 203.0.113.7:4000 -> 10.0.0.1:<port> followed by `tlvs`. */
function headerWith(port: number, tlvs: Buffer[]): Buffer {
  const base = encodeProxyV2({ address: '203.0.113.7', port: 4000 }, { address: '10.0.0.1', port });
  const extra = Buffer.concat(tlvs);
  const out = Buffer.concat([base, extra]);
  out.writeUInt16BE(base.readUInt16BE(14) + extra.length, 14);
  return out;
}

// SSL TLV (0x20): client=PP2_CLIENT_SSL|PP2_CLIENT_CERT_CONN|PP2_CLIENT_CERT_SESS (0x07), verify=0 ("verified").
const SSL = tlv(0x20, Buffer.concat([Buffer.from([0x07, 0, 0, 0, 0]), tlv(0x22, 'CN=admin')]));
const ALPN = tlv(0x01, 'h2');
const AWS_VPCE = tlv(0xea, Buffer.concat([Buffer.from([0x01]), Buffer.from('vpce-0123456789abcdef0')]));

async function ingress(t: TestContext, keep?: number[]) {
  const port = await freePort();
  const received: Buffer[] = [];
  const app = createServer((s: Socket) => {
    const chunks: Buffer[] = [];
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('end', () => {
      received.push(Buffer.concat(chunks));
      s.end();
    });
  });
  await new Promise<void>((r) => app.listen(port, '127.0.0.1', r));
  const dir = mkdtempSync(join(tmpdir(), 'cloister-tlv-'));
  const svc = await startIngress(
    {
      ports: [{ port, secureContext: null }],
      proxyProtocol: true,
      upstreamRetryMs: 2000,
      closeGraceMs: 100,
      proxyTlvs: keep,
    },
    { transport: new EmulatedTransport(dir, 16), logger },
  );
  t.after(async () => {
    await svc.close();
    app.close();
    rmSync(dir, { recursive: true, force: true });
  });
  /** Sends bytes as the host would; resolves once the connection is over. */
  const send = (bytes: Buffer) =>
    new Promise<void>((resolve) => {
      const s = connect(join(dir, '16', `${port}.sock`));
      s.on('error', () => resolve());
      s.on('close', () => resolve());
      s.on('data', () => {});
      s.end(bytes);
    });
  return { port, received, send };
}

test('PROXY v2 TLVs from the host are stripped before the app sees the header (default)', async (t) => {
  const { port, received, send } = await ingress(t);
  await send(Buffer.concat([headerWith(port, [SSL, ALPN, AWS_VPCE]), Buffer.from('payload')]));
  assert.equal(received.length, 1);
  const plain = encodeProxyV2({ address: '203.0.113.7', port: 4000 }, { address: '10.0.0.1', port });
  assert.equal(received[0]!.toString('hex'), Buffer.concat([plain, Buffer.from('payload')]).toString('hex'));
  assert.deepEqual(decodeProxyV2(received[0]!.subarray(0, plain.length)), {
    family: 'IPv4',
    sourceAddress: '203.0.113.7',
    sourcePort: 4000,
    destAddress: '10.0.0.1',
    destPort: port,
  });
});

test('ingress.proxy_protocol_tlvs passes only the listed TLV types, in the order the host sent them', async (t) => {
  const { port, received, send } = await ingress(t, [0xea, 0x01]);
  await send(Buffer.concat([headerWith(port, [SSL, ALPN, AWS_VPCE]), Buffer.from('x')]));
  assert.equal(received.length, 1);
  const want = Buffer.concat([headerWith(port, [ALPN, AWS_VPCE]), Buffer.from('x')]);
  assert.equal(received[0]!.toString('hex'), want.toString('hex'));
});

test('a header whose TLV area is malformed is refused: the app never sees the connection', async (t) => {
  const { port, received, send } = await ingress(t, [0x01]);
  const truncated = headerWith(port, [Buffer.from([0x20, 0xff, 0xff, 0x01])]);
  const dangling = headerWith(port, [ALPN, Buffer.from([0x01, 0x00])]);
  for (const bad of [truncated, dangling]) await send(Buffer.concat([bad, Buffer.from('payload')]));
  // A good header afterwards still goes through.
  await send(Buffer.concat([headerWith(port, [ALPN]), Buffer.from('ok')]));
  assert.equal(received.length, 1, received.map((r) => r.toString('hex')).join('\n'));
  assert.ok(received[0]!.subarray(0, PPV2_SIGNATURE.length).equals(PPV2_SIGNATURE));
  assert.equal(received[0]!.subarray(-2).toString(), 'ok');
});
