// Host-side pieces: the status and log readers (reconnection, replay de-duplication), nitro-cli output
// parsing, and the PROXY v2 codec.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import { parseNitroJson } from '../../../src/host/nitro-cli.ts';
import { exitCodeFor } from '../../../src/host/session.ts';
import { followLogs, followStatus } from '../../../src/host/streams.ts';
import { decodeProxyV2, encodeProxyV2 } from '../../../src/ingress/proxy-protocol.ts';
import { createLogger } from '../../../src/log/logger.ts';
import type { AppStatus } from '../../../src/supervisor/status.ts';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { APP_LOG_PORT, STATUS_PORT } from '../../../src/transport/types.ts';

const logger = createLogger({ level: 'silent' });

function tmp(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-host-streams-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

test('log reader: after a reconnection the replayed backlog is not printed twice', async (t) => {
  const dir = tmp(t);
  const server = await new EmulatedTransport(dir, 16).listen(APP_LOG_PORT);
  t.after(() => server.close());
  // The enclave's ring as each connection sees it: the second replays everything, then new output.
  const sessions = ['line 1\nline 2\n', 'line 1\nline 2\nline 3\n'];
  let n = 0;
  server.on('connection', (s: Socket) => {
    const text = sessions[n++];
    if (text === undefined) return;
    s.end(text);
  });
  const out = new PassThrough();
  let printed = '';
  out.on('data', (d: Buffer) => {
    printed += d.toString();
  });
  const follower = followLogs({ transport: new EmulatedTransport(dir, 2), cid: 16, logger, out });
  t.after(() => follower.stop());
  const end = Date.now() + 10_000;
  while (!printed.includes('line 3') && Date.now() < end) await new Promise((r) => setTimeout(r, 20));
  assert.equal(printed, 'line 1\nline 2\nline 3\n');
});

test('status reader: reconnects after EOF and understands odyn and cloister lines', async (t) => {
  const dir = tmp(t);
  const server = await new EmulatedTransport(dir, 16).listen(STATUS_PORT);
  t.after(() => server.close());
  const sessions = [
    '{ "status": "running" }\n', // odyn's spacing
    'not json\n{"status":"running","pid":42}\n{ "status": "signaled", "signal": "SIGTERM" }\n',
  ];
  let n = 0;
  server.on('connection', (s: Socket) => {
    const text = sessions[n++];
    if (text !== undefined) s.end(text);
  });
  const seen: AppStatus[] = [];
  const done = new Promise<void>((resolve) => {
    const f = followStatus({
      transport: new EmulatedTransport(dir, 2),
      cid: 16,
      logger,
      connectTimeoutMs: 5000,
      onStatus: (s) => {
        seen.push(s);
        if (s.status === 'signaled') {
          f.stop();
          resolve();
        }
      },
      onLost: () => {},
    });
  });
  await done;
  assert.deepEqual(seen, [
    { status: 'running' },
    { status: 'running', pid: 42 },
    { status: 'signaled', signal: 15, signal_name: 'SIGTERM' },
  ]);
  assert.equal(exitCodeFor(seen[2]!), 107);
  assert.equal(exitCodeFor({ status: 'exited', code: 300 }), 300 & 0xff);
  assert.equal(exitCodeFor({ status: 'fatal', error: 'x' }), 108);
  assert.equal(exitCodeFor({ status: 'running' }), null);
});

test('status reader: gives up when the status port never comes up', async (t) => {
  const dir = tmp(t);
  const why = await new Promise<string>((resolve) => {
    followStatus({
      transport: new EmulatedTransport(dir, 2),
      cid: 16,
      logger,
      connectTimeoutMs: 300,
      onStatus: () => {},
      onLost: (err) => resolve(err.message),
    });
  });
  assert.match(why, /cannot reach the enclave status port/);
});

test('nitro-cli output: the JSON after the progress lines', () => {
  const out =
    'Start allocating memory...\nStarted enclave with enclave-cid: 16, memory: 512 MiB, cpu-ids: [1, 3]\n{\n  "EnclaveName": "x",\n  "EnclaveID": "i-1-enc2",\n  "EnclaveCID": 16\n}\n';
  assert.deepEqual(parseNitroJson(out), { EnclaveName: 'x', EnclaveID: 'i-1-enc2', EnclaveCID: 16 });
  assert.throws(() => parseNitroJson('nothing here'), /no JSON/);
});

test('PROXY v2: IPv4, IPv6 and mapped addresses round-trip; garbage is refused', () => {
  const v4 = decodeProxyV2(
    encodeProxyV2({ address: '::ffff:10.0.0.7', port: 5555 }, { address: '10.0.0.1', port: 443 }),
  );
  assert.deepEqual(v4, {
    family: 'IPv4',
    sourceAddress: '10.0.0.7',
    sourcePort: 5555,
    destAddress: '10.0.0.1',
    destPort: 443,
  });
  const v6 = decodeProxyV2(encodeProxyV2({ address: '2001:db8::1', port: 1 }, { address: '::1', port: 2 }));
  assert.equal(v6.family, 'IPv6');
  assert.equal(v6.sourceAddress, '2001:db8::1');
  assert.equal(v6.destAddress, '::1');
  assert.deepEqual(
    decodeProxyV2(encodeProxyV2({ address: '1.2.3.4', port: 1 }, { address: '::1', port: 2 })),
    {
      family: 'unspec',
    },
  );
  assert.throws(
    () => decodeProxyV2(Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')),
    /not a PROXY protocol v2/,
  );
  const bad = encodeProxyV2({ address: '1.2.3.4', port: 1 }, { address: '5.6.7.8', port: 2 });
  bad[12] = 0x31; // version 3
  assert.throws(() => decodeProxyV2(bad), /unsupported PROXY protocol version 3/);
});
