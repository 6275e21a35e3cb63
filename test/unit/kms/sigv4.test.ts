// SigV4: the signer the KMS proxy re-signs with, the emulator's verifier, and credential-scope parsing,
// against the aws-c-auth suite and the generated TrentService.Decrypt vectors.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { HttpRequest } from '@smithy/protocol-http';
import { SignatureV4 } from '@smithy/signature-v4';
import { createKmsSigner, NodeSha256, readScope, signKmsRequest } from '../../../src/kms/sigv4.ts';
import { canonicalRequest, verifySignature } from '../../../src/kms-emulator/sigv4-verify.ts';

const V = join(import.meta.dirname, '../../vectors/sigv4');
const SECRET = 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY';
const DATE = new Date('2015-08-30T12:36:00Z');

/** The generated files hold JSON objects one after the other. */
function jsonObjects(
  text: string,
): Array<{ sessionToken: string | null; body: string; headers: Record<string, string> }> {
  const out = [];
  let depth = 0;
  let start = 0;
  let inString = false;
  let escaped = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (escaped) escaped = false;
      else if (c === '\\') escaped = true;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' && depth++ === 0) start = i;
    else if (c === '}' && --depth === 0) out.push(JSON.parse(text.slice(start, i + 1)));
  }
  return out;
}

const expectedSignatures: Record<string, string[]> = {
  'kms_decrypt_smithy_signature_v4_5.7.5_no_content_sha256.json': [
    'f4d2569f46fd6c6e21a6edca3f6ccb324bb2059ef50b8136c0a584fde449e30b',
    '449ee0040e4c01e1a8ee64e896888586b9f7db2913e3c352dc2abeca74594b94',
  ],
  'kms_decrypt_smithy_signature_v4_5.7.5.json': [
    'b6958ed2596ea090e90618146bf5eeed1ac212dd2a68bc7d62aade7ace3bf541',
    'c9062f09a0f92adabd8c3735c42219d96a092d675acc79959e7a28004cdc1b92',
  ],
};

test('the re-signing path reproduces the TrentService.Decrypt vectors (with and without a token)', async () => {
  const cases = jsonObjects(
    readFileSync(join(V, 'kms_decrypt_smithy_signature_v4_5.7.5_no_content_sha256.json'), 'utf8'),
  );
  assert.equal(cases.length, 2);
  for (const [i, c] of cases.entries()) {
    const signer = createKmsSigner('us-east-1', {
      accessKeyId: 'AKIDEXAMPLE',
      secretAccessKey: SECRET,
      sessionToken: c.sessionToken ?? undefined,
    });
    const headers = await signKmsRequest(
      signer,
      {
        host: 'kms.us-east-1.amazonaws.com',
        headers: { 'content-type': 'application/x-amz-json-1.1', 'x-amz-target': 'TrentService.Decrypt' },
        body: c.body,
      },
      DATE,
    );
    assert.equal(headers.authorization, c.headers.authorization);
    assert.ok(
      headers.authorization!.endsWith(
        expectedSignatures['kms_decrypt_smithy_signature_v4_5.7.5_no_content_sha256.json']![i]!,
      ),
    );
    assert.equal(headers['x-amz-security-token'], c.sessionToken ?? undefined);
  }
});

test('the verifier accepts all four vectors and rejects a changed body, secret or token', async () => {
  for (const [file, sigs] of Object.entries(expectedSignatures)) {
    const cases = jsonObjects(readFileSync(join(V, file), 'utf8'));
    for (const [i, c] of cases.entries()) {
      assert.ok(c.headers.authorization!.endsWith(sigs[i]!));
      const lookup = () => ({ secretAccessKey: SECRET, sessionToken: c.sessionToken ?? undefined });
      const base = { method: 'POST', path: '/', headers: c.headers, lookup, now: DATE };
      const scope = await verifySignature({ ...base, body: Buffer.from(c.body) });
      assert.deepEqual(scope, {
        accessKeyId: 'AKIDEXAMPLE',
        date: '20150830',
        region: 'us-east-1',
        service: 'kms',
      });
      await assert.rejects(
        verifySignature({ ...base, body: Buffer.from(c.body.replace('ZXhh', 'ZXhi')) }),
        (e: Error & { type?: string }) =>
          e.type === 'InvalidSignatureException' || /does not match/.test(e.message),
      );
      await assert.rejects(
        verifySignature({
          ...base,
          body: Buffer.from(c.body),
          lookup: () => ({ secretAccessKey: `${SECRET}x` }),
        }),
        { type: 'InvalidSignatureException' },
      );
      await assert.rejects(verifySignature({ ...base, body: Buffer.from(c.body), lookup: () => undefined }), {
        type: 'UnrecognizedClientException',
      });
      await assert.rejects(
        verifySignature({ ...base, body: Buffer.from(c.body), now: new Date('2015-08-30T13:00:00Z') }),
        {
          type: 'InvalidSignatureException',
          message: /Signature expired/,
        },
      );
    }
  }
});

test('the aws-c-auth suite cases match through NodeSha256 (canonical request, string to sign, signature)', async () => {
  for (const name of ['post-vanilla', 'post-x-www-form-urlencoded', 'post-sts-header-before']) {
    const dir = join(V, name);
    const ctx = JSON.parse(readFileSync(join(dir, 'context.json'), 'utf8'));
    const raw = readFileSync(join(dir, 'request.txt'), 'utf8').replace(/\r\n/g, '\n');
    const [head, ...bodyParts] = raw.split('\n\n');
    const [requestLine, ...headerLines] = head!.split('\n');
    const headers: Record<string, string> = {};
    for (const line of headerLines) {
      if (!line) continue;
      const idx = line.indexOf(':');
      headers[line.slice(0, idx).toLowerCase()] = line.slice(idx + 1);
    }
    const signer = new SignatureV4({
      credentials: {
        accessKeyId: ctx.credentials.access_key_id,
        secretAccessKey: ctx.credentials.secret_access_key,
        sessionToken: ctx.credentials.token,
      },
      region: ctx.region,
      service: ctx.service,
      sha256: NodeSha256,
      applyChecksum: ctx.sign_body === true,
    });
    const signed = await signer.sign(
      new HttpRequest({
        method: requestLine!.split(' ')[0],
        protocol: 'https:',
        hostname: headers.host,
        path: requestLine!.split(' ')[1],
        headers,
        body: bodyParts.join('\n\n'),
      }),
      { signingDate: new Date(ctx.timestamp) },
    );
    const want = readFileSync(join(dir, 'header-signature.txt'), 'utf8').trim();
    assert.match(signed.headers.authorization!, new RegExp(`Signature=${want}$`), name);
  }
});

test("the emulator's own verifier builds the aws-c-auth suite's canonical requests and accepts their signed requests", async () => {
  for (const name of ['post-vanilla', 'post-x-www-form-urlencoded', 'post-sts-header-before']) {
    const dir = join(V, name);
    const ctx = JSON.parse(readFileSync(join(dir, 'context.json'), 'utf8'));
    const raw = readFileSync(join(dir, 'header-signed-request.txt'), 'utf8').replace(/\r\n/g, '\n');
    const [head, ...bodyParts] = raw.split('\n\n');
    const body = Buffer.from(bodyParts.join('\n\n'));
    const [requestLine, ...headerLines] = head!.split('\n');
    const [method, target] = requestLine!.split(' ') as [string, string];
    const headers: Record<string, string> = {};
    for (const line of headerLines) {
      const idx = line.indexOf(':');
      if (idx > 0) headers[line.slice(0, idx).toLowerCase()] = line.slice(idx + 1);
    }
    const signed = /SignedHeaders=([^,]+)/.exec(headers.authorization!)![1]!.split(';');
    const payloadHash = createHash('sha256').update(body).digest('hex');
    const want = readFileSync(join(dir, 'header-canonical-request.txt'), 'utf8');
    assert.equal(canonicalRequest(method, target, headers, signed, payloadHash), want, name);
    const lookup = () => ({
      secretAccessKey: ctx.credentials.secret_access_key,
      sessionToken: ctx.credentials.token,
    });
    const scope = await verifySignature({ method, path: target, headers, body, lookup, now: DATE });
    assert.equal(scope.service, 'service', name);
    await assert.rejects(
      verifySignature({ method, path: `${target}?a=1`, headers, body, lookup, now: DATE }),
      { type: 'InvalidSignatureException' },
      `${name}: a query the signature does not cover`,
    );
  }
});

test('readScope takes the region from the Authorization header or X-Amz-Credential, as odyn does', () => {
  const none = new URLSearchParams();
  assert.deepEqual(
    readScope('AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/kms/aws4_request, ', none),
    {
      accessKeyId: 'AKIDEXAMPLE',
      date: '20150830',
      region: 'us-east-1',
      service: 'kms',
    },
  );
  const q = new URLSearchParams('x-amz-credential=AKIDEXAMPLE%2F20150830%2Feu-west-2%2Fkms%2Faws4_request');
  assert.equal(readScope(undefined, q).region, 'eu-west-2');
  assert.equal(
    readScope(
      'AWS4-HMAC-SHA256 Credential=A/20240101/ap-south-1/kms/aws4_request, SignedHeaders=host, Signature=00',
      none,
    ).region,
    'ap-south-1',
  );
  assert.throws(() => readScope(undefined, none), /no AWS SigV4 signature/);
  assert.throws(() => readScope('Basic Zm9vOmJhcg==', none), /not an AWS SigV4/);
  assert.throws(() => readScope(undefined, new URLSearchParams('X-Amz-Credential=garbage')), /malformed/);
});
