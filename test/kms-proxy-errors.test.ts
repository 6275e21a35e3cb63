// The KMS proxy's refusals: every failure gets a status and a KMS-style JSON body, never a dropped
// connection; and no secret reaches a log line.
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { test } from 'node:test';
import {
  CreateKeyCommand,
  DecryptCommand,
  EncryptCommand,
  GenerateDataKeyCommand,
} from '@aws-sdk/client-kms';
import { freePort, PROXY_CREDS, startHarness } from './kms-harness.ts';

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
