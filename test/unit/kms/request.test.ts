// parseKmsRequest: which requests the KMS proxy takes as KMS JSON 1.1 calls (and will sign), and the
// KMS-format error it answers every other one with. A table: one row per rule.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CloisterError, ERROR_TABLE, renderKms } from '../../../src/errors.ts';
import { type KmsRequest, operationLabel, parseKmsRequest } from '../../../src/kms/request.ts';

const AUTH = (region = 'us-east-1', service = 'kms') =>
  `AWS4-HMAC-SHA256 Credential=AKIDX/20260101/${region}/${service}/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`;

function req(over: Partial<KmsRequest> & { target?: string | null; auth?: string | null } = {}): KmsRequest {
  const headers: KmsRequest['headers'] = { ...over.headers };
  if (over.auth !== null) headers.authorization = over.auth ?? AUTH();
  if (over.target !== null) headers['x-amz-target'] = over.target ?? 'TrentService.Decrypt';
  return {
    method: 'method' in over ? over.method : 'POST',
    url: over.url ?? '/',
    headers,
    body: over.body ?? Buffer.from('{"CiphertextBlob":"AAAA"}'),
  };
}

const presigned =
  'X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDX%2F20260101%2Feu-west-2%2Fkms%2Faws4_request&X-Amz-Signature=00';

test('KMS JSON 1.1 calls are read into region, target and (for attested actions) the input', () => {
  const rows: Array<[string, KmsRequest, Record<string, unknown>]> = [
    [
      'Decrypt: attested, body parsed',
      req(),
      {
        region: 'us-east-1',
        target: 'TrentService.Decrypt',
        attested: { action: 'Decrypt', field: 'Plaintext' },
        input: { CiphertextBlob: 'AAAA' },
      },
    ],
    [
      'action matched case-insensitively, the field follows the action',
      req({ target: 'trentservice.generatedatakeypair', body: Buffer.from('{}') }),
      {
        region: 'us-east-1',
        target: 'trentservice.generatedatakeypair',
        attested: { action: 'GenerateDataKeyPair', field: 'PrivateKeyPlaintext' },
        input: {},
      },
    ],
    [
      'empty body of an attested call is {}',
      req({ target: 'TrentService.GenerateRandom', body: Buffer.alloc(0) }),
      {
        region: 'us-east-1',
        target: 'TrentService.GenerateRandom',
        attested: { action: 'GenerateRandom', field: 'Plaintext' },
        input: {},
      },
    ],
    [
      "the app's own Recipient: forwarded unchanged",
      req({ body: Buffer.from('{"CiphertextBlob":"AAAA","Recipient":{"AttestationDocument":"x"}}') }),
      {
        region: 'us-east-1',
        target: 'TrentService.Decrypt',
        attested: { action: 'Decrypt', field: 'Plaintext' },
        input: null,
      },
    ],
    [
      'a non-attested action: body not parsed (even if it is not JSON)',
      req({ target: 'TrentService.ListKeys', body: Buffer.from('{not json') }),
      { region: 'us-east-1', target: 'TrentService.ListKeys', input: null },
    ],
    [
      'presigned: the scope comes from the query, whose parameters are all presigning ones',
      req({ url: `/?${presigned}`, auth: null, target: 'TrentService.ListKeys' }),
      { region: 'eu-west-2', target: 'TrentService.ListKeys', input: null },
    ],
    [
      'absolute-form target naming /',
      req({ url: 'http://127.0.0.1:9999/', target: 'TrentService.ListKeys' }),
      { region: 'us-east-1', target: 'TrentService.ListKeys', input: null },
    ],
  ];
  for (const [name, r, want] of rows) assert.deepEqual({ ...parseKmsRequest(r) }, want, name);
});

test('anything else is a CloisterError whose code gives the status and __type the proxy answers with', () => {
  const rows: Array<[string, KmsRequest, number, string, RegExp]> = [
    [
      'Decrypt sent with PUT',
      req({ method: 'PUT' }),
      405,
      'UnsupportedOperationException',
      /PUT is not a KMS call/,
    ],
    ['GET', req({ method: 'GET' }), 405, 'UnsupportedOperationException', /POST \//],
    ['no method', req({ method: undefined }), 405, 'UnsupportedOperationException', /not a KMS call/],
    ['Decrypt to /x', req({ url: '/x' }), 404, 'UnknownOperationException', /\/x is not a KMS endpoint/],
    ['Decrypt to /%2F', req({ url: '/%2F' }), 404, 'UnknownOperationException', /not a KMS endpoint/],
    ['absolute form, other path', req({ url: 'http://h/a' }), 404, 'UnknownOperationException', /\/a/],
    ['unparsable target', req({ url: 'http://[' }), 400, 'ValidationException', /not a valid URL/],
    [
      'a query parameter named __proto__',
      req({ url: '/?__proto__=x' }),
      400,
      'ValidationException',
      /query parameter '__proto__'/,
    ],
    ['any other query parameter', req({ url: '/?a=1' }), 400, 'ValidationException', /query parameter 'a'/],
    [
      'presigning parameters plus another',
      req({ url: `/?${presigned}&constructor=1`, auth: null }),
      400,
      'ValidationException',
      /'constructor'/,
    ],
    ['no signature', req({ auth: null }), 400, 'IncompleteSignatureException', /no AWS SigV4 signature/],
    [
      'not SigV4',
      req({ auth: 'Basic Zm9vOmJhcg==' }),
      400,
      'IncompleteSignatureException',
      /not an AWS SigV4/,
    ],
    [
      'a region that is an authority',
      req({ auth: AUTH('x@127.0.0.1:1#') }),
      400,
      'InvalidSignatureException',
      /invalid region/,
    ],
    ['signed for s3', req({ auth: AUTH('us-east-1', 's3') }), 400, 'InvalidSignatureException', /'s3'/],
    ['no X-Amz-Target', req({ target: null }), 400, 'UnknownOperationException', /X-Amz-Target/],
    [
      'X-Amz-Target with a space',
      req({ target: 'Trent Service' }),
      400,
      'UnknownOperationException',
      /malformed/,
    ],
    [
      'attested call, body not JSON',
      req({ body: Buffer.from('{not json') }),
      400,
      'SerializationException',
      /not a JSON object/,
    ],
    [
      'attested call, body a JSON array',
      req({ body: Buffer.from('[1]') }),
      400,
      'SerializationException',
      /not a JSON object/,
    ],
    [
      'attested call, body nested 33 deep',
      req({ body: Buffer.from(`{"a":${'['.repeat(32)}${']'.repeat(32)}}`) }),
      400,
      'SerializationException',
      /nested too deeply/,
    ],
  ];
  for (const [name, r, status, type, message] of rows) {
    assert.throws(
      () => parseKmsRequest(r),
      (err: unknown) => {
        assert.ok(err instanceof CloisterError, `${name}: ${String(err)}`);
        assert.deepEqual([err.status, ERROR_TABLE[err.code].kmsType], [status, type], name);
        assert.match(err.message, message, name);
        const reply = renderKms(err, 'cloister KMS proxy: ');
        assert.equal(reply.status, status, name);
        assert.equal(JSON.parse(reply.body).__type, type, name);
        assert.equal(reply.headers['x-amzn-errortype'], type, name);
        return true;
      },
      name,
    );
  }
});

test('operationLabel keeps the metric label set bounded', () => {
  assert.equal(operationLabel(undefined), 'unknown');
  assert.equal(operationLabel('TrentService.ListKeys'), 'ListKeys');
  assert.equal(operationLabel('trentservice.decrypt'), 'Decrypt');
  assert.equal(operationLabel('TrentService.listkeys'), 'other');
  assert.equal(operationLabel('TrentService.constructor'), 'other');
  assert.equal(operationLabel(`TrentService.${'A'.repeat(65)}`), 'other');
});
