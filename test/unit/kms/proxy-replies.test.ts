// The proxy against a scripted KMS: the enclaver vector answered as CiphertextForRecipient (the proxy
// holds the vector's key), the output field of every attested action (odyn 0.5 wrote Plaintext for all,
// Enclaver #221/#224), and replies the proxy must refuse rather than pass on.
import assert from 'node:assert/strict';
import { createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { decodeDocument } from '../../../src/attestation/document.ts';
import { DEFAULT_SETTINGS } from '../../../src/config/types.ts';
import { startKmsProxy } from '../../../src/kms/proxy.ts';
import { buildEnvelope } from '../../../src/kms-emulator/recipient.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { openSoftwareNsm } from '../../../src/nsm/software.ts';
import { planKms } from '../../../src/plan/index.ts';
import { startHarness } from '../../helpers/kms-harness.ts';
import { raw } from '../../helpers/raw-http.ts';

const V = join(import.meta.dirname, '../../vectors');
const AUTH = `AWS4-HMAC-SHA256 Credential=AKIDX/20260101/us-east-1/kms/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`;

interface Seen {
  target: string;
  body: Record<string, unknown>;
  authorization: string;
}

/** A fake KMS whose reply is computed by `answer` from the request the proxy sent. */
async function mockKms(answer: (seen: Seen) => { status?: number; body: unknown }) {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const s = {
        target: String(req.headers['x-amz-target']),
        body: JSON.parse(Buffer.concat(chunks).toString() || '{}'),
        authorization: String(req.headers.authorization),
      };
      seen.push(s);
      const a = answer(s);
      const text = JSON.stringify(a.body);
      res
        .writeHead(a.status ?? 200, {
          'content-type': 'application/x-amz-json-1.1',
          'x-amzn-requestid': 'mock-req',
        })
        .end(text);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    seen,
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

async function startProxy(
  t: { after: (fn: () => unknown) => void },
  kmsUrl: string,
  recipientKey?: ReturnType<typeof createPrivateKey>,
) {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kms-mock-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const nsm = await openSoftwareNsm({ stateDir: join(dir, 'nsm'), pcrs: {} });
  t.after(() => nsm.close());
  const config = {
    manifestPath: join(dir, 'enclaver.yaml'),
    configDir: dir,
    manifest: {
      version: 'v1' as const,
      name: 'm',
      target: 'm',
      sources: { app: 'a' },
      kms_proxy: { listen_port: 0, endpoints: { 'us-east-1': kmsUrl } },
    },
    settings: DEFAULT_SETTINGS,
  };
  const proxy = await startKmsProxy(planKms(config)!, {
    logger: createLogger({ level: 'silent' }),
    nsm,
    recipientKey,
    credentials: { env: { AWS_ACCESS_KEY_ID: 'AKIDPROXY', AWS_SECRET_ACCESS_KEY: 's' } },
  });
  t.after(() => proxy.close());
  return proxy.env!.AWS_KMS_ENDPOINT!;
}

function call(
  url: string,
  target: string,
  body: unknown,
): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      `${url}/`,
      {
        method: 'POST',
        headers: {
          authorization: AUTH,
          'x-amz-target': target,
          'content-type': 'application/x-amz-json-1.1',
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode!, body: JSON.parse(Buffer.concat(chunks).toString()) }),
        );
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

test('the enclaver vector as CiphertextForRecipient comes back as Plaintext "Hello, World", KeyId kept', async (t) => {
  const vector = readFileSync(join(V, 'enclaver_ciphertext_for_recipient.ber')).toString('base64');
  const kms = await mockKms(() => ({
    body: {
      KeyId: 'arn:aws:kms:us-east-1:111122223333:key/k',
      CiphertextForRecipient: vector,
      EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
    },
  }));
  t.after(() => kms.close());
  const url = await startProxy(
    t,
    kms.url,
    createPrivateKey(readFileSync(join(V, 'enclaver_recipient_private_key.pem'))),
  );
  const r = await call(url, 'TrentService.Decrypt', { CiphertextBlob: 'AAAA' });
  assert.equal(r.status, 200);
  assert.deepEqual(r.body, {
    KeyId: 'arn:aws:kms:us-east-1:111122223333:key/k',
    Plaintext: Buffer.from('Hello, World').toString('base64'),
    EncryptionAlgorithm: 'SYMMETRIC_DEFAULT',
  });
  const sent = kms.seen[0]!;
  assert.equal(sent.body.CiphertextBlob, 'AAAA');
  const recipient = sent.body.Recipient as { AttestationDocument: string; KeyEncryptionAlgorithm: string };
  assert.equal(recipient.KeyEncryptionAlgorithm, 'RSAES_OAEP_SHA_256');
  assert.ok(decodeDocument(Buffer.from(recipient.AttestationDocument, 'base64')).publicKey);
  assert.match(
    sent.authorization,
    /^AWS4-HMAC-SHA256 Credential=AKIDPROXY\/\d{8}\/us-east-1\/kms\/aws4_request/,
  );
});

test('each attested action answers in its own field; the secret goes only to the attested key', async (t) => {
  const secret = Buffer.from('the secret bytes');
  // Encrypt to whatever public key the attestation document names, as KMS does.
  const kms = await mockKms((s) => {
    if (!s.body.Recipient) return { body: { Forwarded: s.target } };
    const doc = decodeDocument(
      Buffer.from((s.body.Recipient as { AttestationDocument: string }).AttestationDocument, 'base64'),
    );
    return {
      body: { KeyId: 'k', CiphertextForRecipient: buildEnvelope(secret, doc.publicKey!).toString('base64') },
    };
  });
  t.after(() => kms.close());
  const url = await startProxy(t, kms.url);
  const expect: Array<[string, string]> = [
    ['TrentService.Decrypt', 'Plaintext'],
    ['TrentService.GenerateDataKey', 'Plaintext'],
    ['TrentService.GenerateRandom', 'Plaintext'],
    ['TrentService.GenerateDataKeyPair', 'PrivateKeyPlaintext'],
    ['TrentService.DeriveSharedSecret', 'SharedSecret'],
    ['trentservice.generatedatakeypair', 'PrivateKeyPlaintext'],
    ['TRENTSERVICE.DERIVESHAREDSECRET', 'SharedSecret'],
  ];
  for (const [target, field] of expect) {
    const r = await call(url, target, {});
    assert.equal(r.status, 200, target);
    assert.deepEqual(r.body, { KeyId: 'k', [field]: secret.toString('base64') }, target);
  }
  // Not attested: forwarded untouched (no Recipient added).
  const enc = await call(url, 'TrentService.Encrypt', { KeyId: 'k', Plaintext: 'eA==' });
  assert.deepEqual(enc.body, { Forwarded: 'TrentService.Encrypt' });
});

test('a reply without, or with a bad, CiphertextForRecipient is a 502, never a pass-through', async (t) => {
  const other = readFileSync(join(V, 'sdkc_cms_test_input_ber.ber')).toString('base64');
  let reply: unknown = {};
  const kms = await mockKms(() => ({ body: reply }));
  t.after(() => kms.close());
  const url = await startProxy(t, kms.url);
  for (const [body, message] of [
    [{ KeyId: 'k', Plaintext: 'c2VjcmV0' }, /no CiphertextForRecipient/],
    [{ CiphertextForRecipient: 'bm90IGJlcg==' }, /not BER|CiphertextForRecipient/],
    [{ CiphertextForRecipient: other }, /addressed to another key/],
  ] as const) {
    reply = body;
    const r = await call(url, 'TrentService.Decrypt', { CiphertextBlob: 'AAAA' });
    assert.equal(r.status, 502);
    assert.equal(r.body.__type, 'KMSInternalException');
    assert.match(String(r.body.message), message);
    assert.equal(r.body.Plaintext, undefined);
  }
});

// Hostile replies to an attested call, sent raw.
test('hostile KMS replies to an attested call are a 502 with a reason, never a pass-through or a crash', async (t) => {
  const good = readFileSync(join(V, 'enclaver_ciphertext_for_recipient.ber'));
  const wrongOid = Buffer.from(good);
  // content type data (1.2.840.113549.1.7.1) instead of envelopedData (…7.3), at its first occurrence.
  wrongOid[wrongOid.indexOf(Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03])) + 8] = 0x01;
  let reply = '';
  const kms = createServer((req, res) => {
    req.resume();
    req.on('end', () => res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' }).end(reply));
  });
  await new Promise<void>((r) => kms.listen(0, '127.0.0.1', r));
  t.after(() => kms.close());
  const h = await startHarness({
    egress: false,
    endpoint: () => `http://127.0.0.1:${(kms.address() as { port: number }).port}`,
  });
  t.after(() => h.close());
  const port = Number(new URL(h.proxyUrl).port);
  const cases: [string, RegExp][] = [
    ['null', /not a JSON object/],
    ['[1,2]', /not a JSON object/],
    ['{"CiphertextForRecipient": 5}', /no CiphertextForRecipient/],
    [
      JSON.stringify({ CiphertextForRecipient: good.subarray(0, 200).toString('base64') }),
      /not BER|CiphertextForRecipient/,
    ],
    [JSON.stringify({ CiphertextForRecipient: wrongOid.toString('base64') }), /CiphertextForRecipient/],
    [JSON.stringify({ CiphertextForRecipient: 'A'.repeat(2 << 20) }), /more than \d+ bytes/],
  ];
  for (const [body, why] of cases) {
    reply = body;
    const r = await raw(
      port,
      `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH}\r\nx-amz-target: TrentService.Decrypt\r\n` +
        'content-type: application/x-amz-json-1.1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}',
      undefined,
      10000,
    );
    assert.equal(r.status, 502, `${body.slice(0, 60)}: ${r.body}`);
    assert.match(JSON.parse(r.body).message, why);
    assert.equal(JSON.parse(r.body).Plaintext, undefined);
  }
});
