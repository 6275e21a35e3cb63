// The emulated transport (what dev mode and every integration test run on) carries 1 GiB between two
// processes intact: SHA-256 computed on both ends, the reply sent after the sender's half-close.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';
import { DEV_ENCLAVE_CID } from '../../../src/transport/types.ts';

const TOTAL = 1 << 30;

test('1 GiB crosses the emulated transport with matching SHA-256 at both ends', {
  timeout: 120_000,
}, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-1gib-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const server = await new EmulatedTransport(dir, DEV_ENCLAVE_CID).listen(5000);
  t.after(() => server.close());

  const received = new Promise<{ bytes: number; sha256: string }>((resolve, reject) => {
    server.once('connection', (sock: Socket) => {
      const hash = createHash('sha256');
      let bytes = 0;
      sock.on('data', (d: Buffer) => {
        bytes += d.length;
        hash.update(d);
      });
      sock.on('error', reject);
      sock.on('end', () => {
        const sha256 = hash.digest('hex');
        // The write side is still open after the peer's FIN (allowHalfOpen).
        sock.end(sha256);
        resolve({ bytes, sha256 });
      });
    });
  });

  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'test/helpers/native/send-child.ts',
      dir,
      String(DEV_ENCLAVE_CID),
      '5000',
      String(TOTAL),
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => child.kill());
  let out = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => {
    out += d;
  });
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  const sender = JSON.parse(out) as { sent: number; sha256: string; reply: string };
  const receiver = await received;
  assert.equal(sender.sent, TOTAL);
  assert.equal(receiver.bytes, TOTAL);
  assert.equal(receiver.sha256, sender.sha256);
  assert.equal(sender.reply, sender.sha256, 'the receiver reported the same digest back');
});
