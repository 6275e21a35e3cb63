import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';

test('emulated transport: connect reaches listen across CIDs, half-close works', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-vsock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const enclave = new EmulatedTransport(dir, 16);
  const host = new EmulatedTransport(dir, 2);
  const server = await enclave.listen(5000);
  t.after(() => server.close());
  server.on('connection', (s) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    // Echo the hash only after the peer half-closed: proves 'end' arrives while we can still write.
    s.on('end', () => s.end(createHash('sha256').update(Buffer.concat(chunks)).digest('hex')));
  });
  const payload = randomBytes(4 * 1024 * 1024);
  const c = await host.connect(16, 5000);
  const reply: Buffer[] = [];
  c.on('data', (d: Buffer) => reply.push(d));
  c.end(payload);
  await new Promise((r) => c.on('close', r));
  assert.equal(Buffer.concat(reply).toString(), createHash('sha256').update(payload).digest('hex'));
});

test('emulated transport: connecting to a port nobody listens on rejects', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-vsock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  await assert.rejects(new EmulatedTransport(dir, 2).connect(16, 1234), /ENOENT|ECONNREFUSED/);
});

test('emulated transport: a port in use is refused (EADDRINUSE), a stale socket file is replaced', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-vsock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const enclave = new EmulatedTransport(dir, 16);
  const first = await enclave.listen(7000);
  first.on('connection', (s) => s.destroy());
  await assert.rejects(enclave.listen(7000), { code: 'EADDRINUSE' });
  // The first listener still answers.
  const c = await new EmulatedTransport(dir, 2).connect(16, 7000);
  c.destroy();
  // A listener that went away without removing its file (a crash) leaves a stale path: taken over.
  await new Promise<void>((r) => first.close(() => r()));
  writeFileSync(join(dir, '16', '7000.sock'), '');
  const second = await enclave.listen(7000);
  second.close();
});
