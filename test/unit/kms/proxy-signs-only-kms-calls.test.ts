// The KMS proxy signs only what it understands (issue 17): a KMS JSON 1.1 call is POST / without a
// query. A Decrypt sent with PUT or to another path used to be forwarded without the Recipient, signed
// with the enclave's credentials; a `?__proto__=x` query was forwarded in the path but left out of the
// signature. Each is now refused in KMS's error format, and nothing reaches KMS.
import assert from 'node:assert/strict';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { PROXY_CREDS, startHarness } from '../../helpers/kms-harness.ts';
import { fakeAuthorization as AUTH } from '../../helpers/raw-http.ts';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, string>;
}

function send(url: string, method: string, path: string, target: string, body: string): Promise<Reply> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: u.hostname,
        port: u.port,
        method,
        path,
        agent: false,
        headers: {
          authorization: AUTH(),
          'content-type': 'application/x-amz-json-1.1',
          'x-amz-target': target,
          // Node frames a DELETE's body only when told its length (no chunking by default).
          'content-length': String(Buffer.byteLength(body)),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () =>
          resolve({
            status: res.statusCode!,
            headers: res.headers,
            body: JSON.parse(Buffer.concat(chunks).toString() || 'null'),
          }),
        );
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** A stand-in KMS that records what reaches it and answers every call with an empty key list. */
async function recordingKms() {
  const seen: Array<{ method: string; url: string; authorization: string; body: string }> = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.push({
        method: req.method!,
        url: req.url!,
        authorization: req.headers.authorization ?? '',
        body: Buffer.concat(chunks).toString(),
      });
      res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
      res.end('{"Keys":[]}');
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}

test('Decrypt with PUT, to /x, or with a query is refused in KMS format and never signed or forwarded', async (t) => {
  const kms = await recordingKms();
  t.after(() => kms.server.close());
  const h = await startHarness({ egress: false, endpoint: () => kms.url });
  t.after(() => h.close());
  const decrypt = '{"CiphertextBlob":"AAAA"}';
  const cases: Array<[string, string, string, string, number, string, RegExp]> = [
    ['PUT', '/', 'TrentService.Decrypt', decrypt, 405, 'UnsupportedOperationException', /PUT/],
    ['DELETE', '/', 'TrentService.Decrypt', decrypt, 405, 'UnsupportedOperationException', /DELETE/],
    ['POST', '/x', 'TrentService.Decrypt', decrypt, 404, 'UnknownOperationException', /\/x/],
    ['POST', '/?__proto__=x', 'TrentService.Decrypt', decrypt, 400, 'ValidationException', /'__proto__'/],
    ['POST', '/?__proto__=x', 'TrentService.ListKeys', '{}', 400, 'ValidationException', /'__proto__'/],
    ['POST', '/?Action=ListKeys', 'TrentService.ListKeys', '{}', 400, 'ValidationException', /'Action'/],
  ];
  for (const [method, path, target, body, status, type, message] of cases) {
    const what = `${method} ${path} ${target}`;
    const r = await send(h.proxyUrl, method, path, target, body);
    assert.equal(r.status, status, `${what}: ${JSON.stringify(r.body)}`);
    assert.equal(r.headers['content-type'], 'application/x-amz-json-1.1', what);
    assert.equal(r.headers['x-amzn-errortype'], type, what);
    assert.equal(r.body.__type, type, what);
    assert.match(r.body.message!, message, what);
    if (status === 405) assert.equal(r.headers.allow, 'POST', what);
  }
  assert.equal(
    kms.seen.length,
    0,
    `requests the proxy does not understand reached KMS: ${JSON.stringify(kms.seen)}`,
  );
  // The same stand-in does receive a real call, signed with the proxy's own credentials.
  const ok = await send(h.proxyUrl, 'POST', '/', 'TrentService.ListKeys', '{}');
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  assert.equal(kms.seen.length, 1);
  assert.equal(kms.seen[0]!.method, 'POST');
  assert.equal(kms.seen[0]!.url, '/');
  assert.match(kms.seen[0]!.authorization, new RegExp(`Credential=${PROXY_CREDS.accessKeyId}/`));
});

test('?__proto__=x through the proxy to the emulator is refused clearly, not signed without it', async (t) => {
  const h = await startHarness({ egress: false });
  t.after(() => h.close());
  const r = await send(h.proxyUrl, 'POST', '/?__proto__=x', 'TrentService.ListKeys', '{}');
  assert.equal(r.status, 400, JSON.stringify(r.body));
  assert.equal(r.body.__type, 'ValidationException');
  assert.match(r.body.message!, /query parameter '__proto__' is not part of a KMS call/);
});
