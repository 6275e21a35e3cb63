// keepServing: a server error after listen (a failed accept: EMFILE, ENFILE, ENOMEM) must not crash
// the daemon. Node emits it as an 'error' event on the server; keepServing logs it and the server goes on.
import assert from 'node:assert/strict';
import { connect, createServer, type Server } from 'node:net';
import { type TestContext, test } from 'node:test';
import { keepServing } from '../../src/server-errors.ts';

function acceptError(code: string): NodeJS.ErrnoException {
  // The shape Node gives an accept failure (errnoException(err, 'accept')).
  return Object.assign(new Error(`accept ${code}`), { code, errno: -24, syscall: 'accept' });
}

async function echoServer(t: TestContext): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => s.end('still here'));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  t.after(() => server.close());
  return { server, port: (server.address() as { port: number }).port };
}

function fetchLine(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = '';
    const c = connect(port, '127.0.0.1');
    c.on('data', (d) => {
      got += d.toString();
    });
    c.on('end', () => resolve(got));
    c.on('error', reject);
  });
}

test('keepServing: an accept error is logged (code, fields) and the server keeps answering', async (t) => {
  const { server, port } = await echoServer(t);
  const lines: { fields: Record<string, unknown>; msg: string }[] = [];
  keepServing(
    server,
    { error: (fields, msg) => lines.push({ fields: fields as Record<string, unknown>, msg }) },
    'test server',
    { port },
  );
  server.emit('error', acceptError('EMFILE'));
  // A burst (every accept attempt fails while descriptors run out) is one line a second, with a count.
  for (let i = 0; i < 50; i++) server.emit('error', acceptError('EMFILE'));
  assert.equal(lines.length, 1);
  assert.equal(lines[0]!.msg, 'test server: server error (still serving)');
  const { err, ...rest } = lines[0]!.fields;
  assert.deepEqual(rest, { port, code: 'EMFILE' });
  // The Error object itself, for pino's serializer (type, message, stack), not its text.
  assert.ok(err instanceof Error);
  assert.equal(err.message, 'accept EMFILE');
  assert.equal(await fetchLine(port), 'still here');
});
