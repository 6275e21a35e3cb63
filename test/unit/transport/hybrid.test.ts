// The host end of a VM's vsock as a Unix socket ("hybrid vsock": Firecracker, Cloud Hypervisor,
// vhost-device-vsock), against a VMM stand-in that speaks the CONNECT/OK handshake byte by byte.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { HybridTransport } from '../../../src/transport/hybrid.ts';

/** A fake VMM on `path`: reads the CONNECT line, then does what `answer` says with the connection. */
async function fakeVmm(t: TestContext, answer: (line: string, s: Socket) => void): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-hybrid-'));
  const path = join(dir, 'vsock.sock');
  const server = createServer((s) => {
    let buf = '';
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      s.off('data', onData);
      answer(buf.slice(0, nl), s);
    };
    s.on('data', onData);
  });
  await new Promise<void>((r) => server.listen(path, r));
  t.after(() => {
    server.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return path;
}

/** Reads to EOF with a plain 'data' listener, as the host's stream readers do (no explicit resume()). */
function readAll(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let out = '';
    s.on('data', (d: Buffer) => {
      out += d;
    });
    s.on('end', () => resolve(out));
    s.on('error', reject);
  });
}

test('hybrid vsock: CONNECT <port>, OK, then the guest bytes (including any sent with the OK)', {
  timeout: 5000,
}, async (t) => {
  const lines: string[] = [];
  const path = await fakeVmm(t, (line, s) => {
    lines.push(line);
    s.write('OK 1073741824\nfirst ');
    s.on('data', (d) => s.write(d));
    s.on('end', () => s.end());
  });
  const sock = await new HybridTransport(path).connect(3, 17000);
  await new Promise((r) => setTimeout(r, 50)); // the caller may listen late: nothing may be lost meanwhile
  const got = readAll(sock);
  sock.end('echoed');
  assert.equal(await got, 'first echoed');
  assert.deepEqual(lines, ['CONNECT 17000']);
});

test('hybrid vsock: nothing listening on the guest port (the VMM hangs up) is ECONNREFUSED', async (t) => {
  const path = await fakeVmm(t, (_line, s) => s.end());
  await assert.rejects(new HybridTransport(path).connect(3, 8080), {
    code: 'ECONNREFUSED',
    message: /CONNECT 8080/,
  });
});

test('hybrid vsock: a reply that is not "OK <n>" is refused, a line that never ends is cut off', async (t) => {
  const bad = await fakeVmm(t, (_line, s) => s.write('ERR no such port\n'));
  await assert.rejects(new HybridTransport(bad).connect(3, 1), {
    code: 'ECONNREFUSED',
    message: /ERR no such port/,
  });
  const endless = await fakeVmm(t, (_line, s) => s.write('OK '.padEnd(100, '9')));
  await assert.rejects(new HybridTransport(endless).connect(3, 1), /no acknowledgement line/);
});

test('hybrid vsock: listen(port) serves guest-initiated connections on <uds>_<port>', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-hybrid-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const uds = join(dir, 'vsock.sock');
  const server = await new HybridTransport(uds).listen(17002);
  t.after(() => server.close());
  server.on('connection', (s: Socket) => s.end('relay here'));
  const s = connect(`${uds}_17002`);
  assert.equal(await readAll(s), 'relay here');
});
