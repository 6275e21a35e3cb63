// Security review of the KMS proxy and the KMS emulator: hostile clients on 127.0.0.1 and hostile
// replies. Every refusal is a status with a body saying why; nothing a client sends may steer the
// proxy's signed requests to a host of its choosing.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CmsError, parseEnvelope } from '../src/kms/cms.ts';
import { exceedsJsonDepth, kmsEndpoint } from '../src/kms/proxy.ts';
import { startKmsEmulator } from '../src/kms-emulator/server.ts';
import { createLogger } from '../src/log/logger.ts';
import { raw } from './hardening-harness.ts';
import { startHarness } from './kms-harness.ts';

const V = join(import.meta.dirname, '../../shared/vectors');

const AUTH = (region = 'us-east-1') =>
  `AWS4-HMAC-SHA256 Credential=AKIDX/20260101/${region}/kms/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`;

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

test('a CiphertextForRecipient with a malformed BER time is a CmsError, like any other bad input', () => {
  for (const b of [
    [0x18, 0x01, 0x41],
    [0x30, 0x03, 0x18, 0x01, 0x41],
  ]) {
    assert.throws(() => parseEnvelope(Buffer.from(b)), CmsError);
  }
});

test('kms-emulator: a malformed X-Amz-Date is a 400 and an over-long body a 413, never a 500 or a reset', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-hardening-kms-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const lines: string[] = [];
  const em = await startKmsEmulator({
    stateDir: dir,
    credentials: [{ accessKeyId: 'AKID', secretAccessKey: 's' }],
    logger: createLogger({ level: 'debug', destination: { write: (l: string) => void lines.push(l) } }),
  });
  t.after(() => em.close());
  const auth = `AWS4-HMAC-SHA256 Credential=AKID/20261399/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`;
  let r = await raw(
    em.port,
    `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${auth}\r\nx-amz-date: 20261399T999999Z\r\n` +
      'x-amz-target: TrentService.ListKeys\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}',
  );
  assert.equal(r.status, 400, r.body);
  assert.match(r.body, /X-Amz-Date/);
  r = await raw(
    em.port,
    `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${auth}\r\nx-amz-target: TrentService.ListKeys\r\n` +
      'transfer-encoding: chunked\r\n\r\n',
    Buffer.concat([Buffer.from('200000\r\n'), Buffer.alloc(0x200000, 0x20), Buffer.from('\r\n')]),
  );
  assert.equal(r.status, 413, JSON.stringify(r));
  assert.match(r.body, /too large/);
  assert.ok(!lines.some((l) => /"level":50/.test(l)), 'no internal error was logged');
});

test("a region named like an Object property ('constructor') is not read from the prototype", () => {
  for (const region of ['constructor', 'tostring', 'valueof']) {
    assert.equal(kmsEndpoint({}, region).hostname, `kms.${region}.amazonaws.com`);
  }
  assert.equal(kmsEndpoint({ constructor: 'http://127.0.0.1:1' }, 'constructor').port, '1');
  assert.equal(kmsEndpoint(undefined, 'constructor').hostname, 'kms.constructor.amazonaws.com');
});

test('kms-emulator: an X-Amz-Target naming an Object member is an unknown operation, not a state dump', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-hardening-kms-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const em = await startKmsEmulator({ stateDir: dir, logger: createLogger({ level: 'silent' }) });
  t.after(() => em.close());
  for (const op of ['constructor', 'toString', 'hasOwnProperty', '__proto__', 'valueOf']) {
    const r = await raw(
      em.port,
      `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH()}\r\nx-amz-target: TrentService.${op}\r\n` +
        'content-length: 2\r\nconnection: close\r\n\r\n{}',
    );
    assert.equal(r.status, 400, `${op}: ${r.body}`);
    assert.match(r.body, /UnknownOperationException/);
    assert.ok(!r.body.includes(dir), 'the state directory leaked');
  }
  const call = async (op: string, input: object) => {
    const b = JSON.stringify(input);
    return raw(
      em.port,
      `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH()}\r\nx-amz-target: TrentService.${op}\r\n` +
        `content-length: ${b.length}\r\nconnection: close\r\n\r\n${b}`,
    );
  };
  const keyId = JSON.parse((await call('CreateKey', {})).body).KeyMetadata.KeyId;
  for (const [op, field] of [
    ['GenerateDataKey', 'KeySpec'],
    ['GenerateDataKeyPair', 'KeyPairSpec'],
  ] as const) {
    const r = await call(op, { KeyId: keyId, [field]: 'constructor' });
    assert.equal(r.status, 400, `${op}: ${r.body}`);
    assert.match(r.body, /ValidationException/);
  }
});

test('hostile KMS replies to an attested call are a 502 with a reason, never a pass-through or a crash', async (t) => {
  const good = readFileSync(join(V, 'enclaver_ciphertext_for_recipient.ber'));
  const wrongOid = Buffer.from(good);
  // content type data (1.2.840.113549.1.7.1) instead of envelopedData (…7.3), at its first occurrence.
  wrongOid[wrongOid.indexOf(Buffer.from([0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x03])) + 8] = 0x01;
  let reply = '';
  const kms = createHttpServer((req, res) => {
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
      `POST / HTTP/1.1\r\nHost: x\r\nauthorization: ${AUTH()}\r\nx-amz-target: TrentService.Decrypt\r\n` +
        'content-type: application/x-amz-json-1.1\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}',
      undefined,
      10000,
    );
    assert.equal(r.status, 502, `${body.slice(0, 60)}: ${r.body}`);
    assert.match(JSON.parse(r.body).message, why);
    assert.equal(JSON.parse(r.body).Plaintext, undefined);
  }
});
