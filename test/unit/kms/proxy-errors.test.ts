// The KMS proxy's refusals: every failure gets a status and a KMS-style JSON body, never a dropped
// connection; and no secret reaches a log line.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { createServer, type Server } from 'node:net';
import { test } from 'node:test';
import {
  CreateKeyCommand,
  DecryptCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
} from '@aws-sdk/client-kms';
import { exceedsJsonDepth } from '../../../src/kms/request.ts';
import { kmsEndpoint } from '../../../src/kms/upstream.ts';
import { freePort, PROXY_CREDS, startHarness } from '../../helpers/kms-harness.ts';
import { fakeAuthorization as AUTH, raw } from '../../helpers/raw-http.ts';

interface Reply {
  status: number;
  type: string | undefined;
  body: Record<string, string>;
}

function post(url: string, headers: Record<string, string>, body: string): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url.includes('?') ? url : `${url}/`, { method: 'POST', headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        assert.equal(res.headers['content-type'], 'application/x-amz-json-1.1');
        resolve({
          status: res.statusCode!,
          type: res.headers['x-amzn-errortype'] as string,
          body: JSON.parse(Buffer.concat(chunks).toString()),
        });
      });
    });
    req.on('error', reject);
    req.end(body);
  });
}

const auth = (service = 'kms') =>
  `AWS4-HMAC-SHA256 Credential=AKIDX/20260101/us-east-1/${service}/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`;

test('malformed requests are answered in KMS JSON error format', async (t) => {
  const h = await startHarness({ egress: false });
  t.after(() => h.close());
  const json = { 'content-type': 'application/x-amz-json-1.1' };
  let r = await post(h.proxyUrl, { ...json, 'x-amz-target': 'TrentService.Decrypt' }, '{}');
  assert.deepEqual([r.status, r.body.__type], [400, 'IncompleteSignatureException']);
  assert.match(r.body.message!, /no AWS SigV4 signature/);
  r = await post(
    h.proxyUrl,
    { ...json, authorization: auth('s3'), 'x-amz-target': 'TrentService.Decrypt' },
    '{}',
  );
  assert.deepEqual([r.status, r.body.__type], [400, 'InvalidSignatureException']);
  assert.match(r.body.message!, /signed for service 's3'/);
  r = await post(h.proxyUrl, { ...json, authorization: auth() }, '{}');
  assert.deepEqual([r.status, r.body.__type], [400, 'UnknownOperationException']);
  r = await post(
    h.proxyUrl,
    { ...json, authorization: auth(), 'x-amz-target': 'TrentService.Decrypt' },
    '{not json',
  );
  assert.deepEqual(
    [r.status, r.body.__type, r.type],
    [400, 'SerializationException', 'SerializationException'],
  );
  // An upstream error passes through unchanged (here: the emulator's own validation).
  r = await post(
    h.proxyUrl,
    { ...json, authorization: auth(), 'x-amz-target': 'TrentService.Decrypt' },
    '{}',
  );
  assert.deepEqual([r.status, r.body.__type], [400, 'ValidationException']);
  assert.match(r.body.message!, /ciphertextBlob/);
});

test('a presigned-style request (scope in the query) is forwarded and re-signed', async (t) => {
  const h = await startHarness({ egress: false });
  t.after(() => h.close());
  const q =
    'X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDX%2F20260101%2Fus-east-1%2Fkms%2Faws4_request&X-Amz-Signature=00';
  const r = await post(
    `${h.proxyUrl}/?${q}`,
    { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.ListKeys' },
    '{}',
  );
  assert.equal(r.status, 200);
  assert.deepEqual(r.body.Keys, []);
});

test('an endpoint the egress policy refuses, or one that is down, gives a clear 502', async (t) => {
  const closedPort = await freePort();
  const denied = await startHarness({ endpoint: (url) => url.replace('127.0.0.1', 'localhost') });
  t.after(() => denied.close());
  await assert.rejects(
    denied.viaProxy.send(new GenerateDataKeyCommand({ KeyId: 'alias/x', KeySpec: 'AES_256' })),
    (err: Error & { $metadata: { httpStatusCode: number } }) => {
      assert.equal(err.name, 'KMSInternalException');
      assert.equal(err.$metadata.httpStatusCode, 502);
      assert.match(err.message, /egress proxy refused CONNECT localhost:\d+: HTTP\/1.1 403/);
      return true;
    },
  );
  const down = await startHarness({ endpoint: () => `http://127.0.0.1:${closedPort}` });
  t.after(() => down.close());
  await assert.rejects(
    down.viaProxy.send(new GenerateDataKeyCommand({ KeyId: 'alias/x', KeySpec: 'AES_256' })),
    (err: Error & { $metadata: { httpStatusCode: number } }) => {
      assert.equal(err.name, 'KMSInternalException');
      assert.equal(err.$metadata.httpStatusCode, 502);
      assert.match(err.message, /cannot reach KMS/);
      return true;
    },
  );
});

test('a call before credentials exist waits ready_wait_ms, then gets a clear 503', async (t) => {
  const h = await startHarness({
    egress: false,
    proxyEnv: { AWS_EC2_METADATA_DISABLED: 'true' },
    settings: { ready_wait_ms: 300 },
  });
  t.after(() => h.close());
  await assert.rejects(
    h.viaProxy.send(new EncryptCommand({ KeyId: 'alias/x', Plaintext: Buffer.from('x') })),
    (err: Error & { $metadata: { httpStatusCode: number } }) => {
      assert.equal(err.name, 'ServiceUnavailableException');
      assert.equal(err.$metadata.httpStatusCode, 503);
      assert.match(err.message, /not ready: no AWS credentials yet/);
      return true;
    },
  );
});

test('plaintexts, data keys and credentials never reach a log line', async (t) => {
  const lines: string[] = [];
  const h = await startHarness({ logLines: lines });
  t.after(() => h.close());
  const key = (await h.direct.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
  const secret = 'log-canary-plaintext-7f3a';
  const enc = await h.viaProxy.send(new EncryptCommand({ KeyId: key, Plaintext: Buffer.from(secret) }));
  const dec = await h.viaProxy.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
  const dk = await h.viaProxy.send(new GenerateDataKeyCommand({ KeyId: key, KeySpec: 'AES_256' }));
  await assert.rejects(
    h.viaProxy.send(new DecryptCommand({ CiphertextBlob: Buffer.from('garbage ciphertext') })),
  );
  assert.equal(Buffer.from(dec.Plaintext!).toString(), secret);
  const all = lines.join('');
  assert.ok(lines.length > 3, 'the run logged something');
  for (const canary of [
    secret,
    Buffer.from(secret).toString('base64'),
    Buffer.from(dk.Plaintext!).toString('base64'),
    PROXY_CREDS.secretAccessKey,
  ]) {
    assert.ok(!all.includes(canary), `a log line contains ${canary.slice(0, 6)}...`);
  }
});

// Hostile clients on 127.0.0.1: every refusal is a status with a body saying why, and nothing a client sends
// may steer the proxy's signed requests to a host of its choosing.
function listenCounter(): Promise<{ server: Server; port: number; dials: () => number }> {
  let n = 0;
  const server = createServer((s) => {
    n++;
    s.destroy();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () =>
      resolve({ server, port: (server.address() as { port: number }).port, dials: () => n }),
    ),
  );
}

test('a region in the signature scope cannot redirect the proxy to another host', async (t) => {
  const h = await startHarness({ egress: false });
  t.after(() => h.close());
  const rogue = await listenCounter();
  t.after(() => rogue.server.close());
  const port = Number(new URL(h.proxyUrl).port);
  for (const region of [`x@127.0.0.1:${rogue.port}#`, `127.0.0.1:${rogue.port}?`, 'US-EAST-1%']) {
    const body = '{}';
    const r = await raw(
      port,
      `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH(region)}\r\nx-amz-target: TrentService.ListKeys\r\n` +
        `content-type: application/x-amz-json-1.1\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
    );
    assert.equal(r.status, 400, r.headers);
    assert.match(r.body, /"__type":"InvalidSignatureException"/);
    assert.match(r.body, /region/);
  }
  assert.equal(rogue.dials(), 0, 'the proxy dialled the host named in the region');
});

test('an over-long body gets a 413 and the connection is closed, not left half-read', async (t) => {
  const h = await startHarness({ egress: false });
  t.after(() => h.close());
  const port = Number(new URL(h.proxyUrl).port);
  const head = (len: number) =>
    `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH()}\r\nx-amz-target: TrentService.Decrypt\r\n` +
    `content-type: application/x-amz-json-1.1\r\ncontent-length: ${len}\r\n\r\n`;
  // Declared too long: refused at once.
  let r = await raw(port, head(50 << 20), Buffer.alloc(1024, 0x20));
  assert.equal(r.status, 413);
  assert.match(r.body, /request body over/);
  assert.ok(r.closed, 'the proxy kept a connection open whose body it will never read');
  // Sent too long (chunked, no length declared): refused once the limit is passed.
  r = await raw(
    port,
    `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH()}\r\nx-amz-target: TrentService.Decrypt\r\ntransfer-encoding: chunked\r\n\r\n`,
    Buffer.concat([Buffer.from('200000\r\n'), Buffer.alloc(0x200000, 0x20), Buffer.from('\r\n')]),
  );
  assert.equal(r.status, 413);
  assert.ok(r.closed);
  // The proxy still answers afterwards.
  r = await raw(port, `${head(2).replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n')}{}`);
  assert.equal(r.status, 400); // the emulator refuses an empty Decrypt: the call went through
});

test('odd requests get a status and a body: bad request-target, CONNECT, malformed HTTP', async (t) => {
  const h = await startHarness({ egress: false });
  t.after(() => h.close());
  const port = Number(new URL(h.proxyUrl).port);
  let r = await raw(
    port,
    `POST http://[ HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH()}\r\nx-amz-target: TrentService.ListKeys\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}`,
  );
  assert.equal(r.status, 400, r.headers);
  assert.match(r.body, /"__type"/);
  r = await raw(
    port,
    'CONNECT kms.us-east-1.amazonaws.com:443 HTTP/1.1\r\nHost: kms.us-east-1.amazonaws.com:443\r\n\r\n',
  );
  assert.equal(r.status, 405, `CONNECT: ${JSON.stringify(r)}`);
  assert.match(r.body, /CONNECT/);
  r = await raw(port, 'HELLO\r\n\r\n');
  assert.equal(r.status, 400);
  assert.match(r.body, /"__type"/);
});

test('an attested call whose JSON is nested deeper than KMS inputs go is a 400 on every Node version', async (t) => {
  const h = await startHarness({ egress: false });
  t.after(() => h.close());
  const body = `{"CiphertextBlob":"AAAA","x":${'['.repeat(400_000)}${']'.repeat(400_000)}}`;
  const r = await raw(
    Number(new URL(h.proxyUrl).port),
    `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH()}\r\nx-amz-target: TrentService.Decrypt\r\n` +
      `content-length: ${body.length}\r\nconnection: close\r\n\r\n`,
    Buffer.from(body),
  );
  assert.equal(r.status, 400, r.body);
  assert.match(r.body, /SerializationException/);
  assert.match(r.body, /nested too deeply/);
});

test('the depth check counts brackets, not brackets inside strings', () => {
  assert.equal(exceedsJsonDepth('{"a":{"b":[1,2,{"c":3}]}}', 4), false);
  assert.equal(exceedsJsonDepth('{"a":{"b":[1,2,{"c":[3]}]}}', 4), true);
  assert.equal(exceedsJsonDepth(`{"k":"${'['.repeat(100)}"}`, 2), false);
  // An escaped backslash ends before the closing quote; an escaped quote does not close the string.
  assert.equal(exceedsJsonDepth(`${String.raw`{"k":"\\"}`}${'{'.repeat(5)}`, 4), true);
  assert.equal(exceedsJsonDepth(`${String.raw`{"k":"a\"`}${'['.repeat(5)}"}`, 2), false);
  assert.equal(exceedsJsonDepth(`${'['.repeat(32)}${']'.repeat(32)}`, 32), false);
  assert.equal(exceedsJsonDepth(`${'['.repeat(33)}${']'.repeat(33)}`, 32), true);
});

test("a region named like an Object property ('constructor') is not read from the prototype", () => {
  for (const region of ['constructor', 'tostring', 'valueof']) {
    assert.equal(kmsEndpoint({}, region).hostname, `kms.${region}.amazonaws.com`);
  }
  assert.equal(kmsEndpoint({ constructor: 'http://127.0.0.1:1' }, 'constructor').port, '1');
  assert.equal(kmsEndpoint(undefined, 'constructor').hostname, 'kms.constructor.amazonaws.com');
});
