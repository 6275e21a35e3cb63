// The KMS emulator in process, against hostile clients on 127.0.0.1: bad dates, over-long bodies and
// operation names that are Object members are refusals with a status, never a 500, a reset or a state dump.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { startKmsEmulator } from '../../../src/kms-emulator/server.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { fakeAuthorization as AUTH, raw } from '../../helpers/raw-http.ts';

test('kms-emulator: a malformed X-Amz-Date is a 400 and an over-long body a 413, never a 500 or a reset', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kms-emulator-'));
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

test('kms-emulator: an X-Amz-Target naming an Object member is an unknown operation, not a state dump', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kms-emulator-'));
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
