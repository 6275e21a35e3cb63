// The emulator's SigV4 verifier against AWS's algorithm, written out: canonical queries as the algorithm
// gives them (including names that are Object members, such as `__proto__`), and requests signed over a
// literal canonical request accepted by the running emulator. A verifier that dropped `__proto__` from the
// canonical query (as the emulator did on URLSearchParams -> plain object, issue 17) accepts what real KMS
// refuses and refuses what real KMS accepts.
import assert from 'node:assert/strict';
import { createHash, createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { HttpRequest } from '@smithy/protocol-http';
import { createKmsSigner } from '../../../src/kms/sigv4.ts';
import { startKmsEmulator } from '../../../src/kms-emulator/server.ts';
import { canonicalQuery, canonicalUri } from '../../../src/kms-emulator/sigv4-verify.ts';
import { createLogger } from '../../../src/log/logger.ts';

const CREDS = { accessKeyId: 'AKIDEXAMPLE', secretAccessKey: 'wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY' };

test('canonicalQuery: encoded names and values, sorted by name then value, no name special', () => {
  const rows: Array<[string, string]> = [
    ['', ''],
    ['__proto__=x', '__proto__=x'],
    ['a=1&__proto__=x', '__proto__=x&a=1'],
    ['constructor=1&toString=2&hasOwnProperty=3', 'constructor=1&hasOwnProperty=3&toString=2'],
    ['__proto__=b&__proto__=a', '__proto__=a&__proto__=b'],
    // by name, then value; not by the whole pair ('-' sorts before '=')
    ['a-b=1&a=2', 'a=2&a-b=1'],
    ['b=2&a=1&a=0', 'a=0&a=1&b=2'],
    // upper case before lower case (code points)
    ['b=1&F=2', 'F=2&b=1'],
    // a name without '=' has the empty value; empty pieces are nothing
    ['uploads', 'uploads='],
    ['a=1&&b=2', 'a=1&b=2'],
    // RFC 3986 unreserved characters stay; everything else is %XX in upper case, once
    ['k=-_.~', 'k=-_.~'],
    ['k=a%20b', 'k=a%20b'],
    ['k=a+b', 'k=a%2Bb'],
    ["k=!'()*", 'k=%21%27%28%29%2A'],
    ['k=%e2%82%ac', 'k=%E2%82%AC'],
    ['k=/', 'k=%2F'],
  ];
  for (const [raw, want] of rows) assert.equal(canonicalQuery(raw), want, raw);
  assert.throws(() => canonicalQuery('k=%zz'), { type: 'MalformedQueryString' });
  assert.throws(() => canonicalQuery('k=%ed%a0%80'), { type: 'MalformedQueryString' });
});

test('canonicalUri: dot segments removed, each segment encoded once more', () => {
  assert.equal(canonicalUri('/'), '/');
  assert.equal(canonicalUri(''), '/');
  assert.equal(canonicalUri('/a/./b/../c/'), '/a/c/');
  assert.equal(canonicalUri('//a'), '/a');
  assert.equal(canonicalUri('/a%20b'), '/a%2520b');
});

/** SigV4 from a literal canonical request: string to sign and signing key as AWS describes them. */
function signature(canonical: string, amzDate: string, region = 'us-east-1', service = 'kms'): string {
  const scope = `${amzDate.slice(0, 8)}/${region}/${service}/aws4_request`;
  const hash = createHash('sha256').update(canonical).digest('hex');
  const toSign = `AWS4-HMAC-SHA256\n${amzDate}\n${scope}\n${hash}`;
  let key = createHmac('sha256', `AWS4${CREDS.secretAccessKey}`).update(amzDate.slice(0, 8)).digest();
  for (const part of [region, service, 'aws4_request']) key = createHmac('sha256', key).update(part).digest();
  return createHmac('sha256', key).update(toSign).digest('hex');
}

function literalCanonical(query: string, host: string, amzDate: string, body: string): string {
  return [
    'POST',
    '/',
    query,
    `content-type:application/x-amz-json-1.1\nhost:${host}\nx-amz-date:${amzDate}\nx-amz-target:TrentService.ListKeys\n`,
    'content-type;host;x-amz-date;x-amz-target',
    createHash('sha256').update(body).digest('hex'),
  ].join('\n');
}

function amzNow(): string {
  return new Date()
    .toISOString()
    .replace(/[-:]/g, '')
    .replace(/\.\d{3}/, '');
}

test("the literal-canonical-request signer agrees with smithy's where smithy is right (ordinary names)", async () => {
  const amzDate = amzNow();
  const body = '{}';
  const signed = await createKmsSigner('us-east-1', CREDS).sign(
    new HttpRequest({
      method: 'POST',
      protocol: 'http:',
      hostname: '127.0.0.1:1',
      path: '/',
      query: { b: '2', a: ['1', '0'] },
      headers: {
        host: '127.0.0.1:1',
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-target': 'TrentService.ListKeys',
      },
      body,
    }),
    {
      signingDate: new Date(
        `${amzDate.slice(0, 4)}-${amzDate.slice(4, 6)}-${amzDate.slice(6, 8)}T${amzDate.slice(9, 11)}:${amzDate.slice(11, 13)}:${amzDate.slice(13, 15)}Z`,
      ),
    },
  );
  const want = signature(literalCanonical('a=0&a=1&b=2', '127.0.0.1:1', amzDate, body), amzDate);
  assert.match(signed.headers.authorization!, new RegExp(`Signature=${want}$`));
});

function post(port: number, path: string, headers: Record<string, string>, body: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, method: 'POST', path, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode!, body: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('kms-emulator: ?__proto__=x verifies when signed as AWS canonicalizes it, not when it is left out', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kms-emulator-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const em = await startKmsEmulator({
    stateDir: dir,
    credentials: [CREDS],
    logger: createLogger({ level: 'silent' }),
  });
  t.after(() => em.close());
  const host = `127.0.0.1:${em.port}`;
  const body = '{}';
  const send = (query: string, canonicalQueryText: string, origin = '') => {
    const amzDate = amzNow();
    const sig = signature(literalCanonical(canonicalQueryText, host, amzDate, body), amzDate);
    return post(
      em.port,
      `${origin}/?${query}`,
      {
        host,
        'content-type': 'application/x-amz-json-1.1',
        'x-amz-date': amzDate,
        'x-amz-target': 'TrentService.ListKeys',
        authorization: `AWS4-HMAC-SHA256 Credential=${CREDS.accessKeyId}/${amzDate.slice(0, 8)}/us-east-1/kms/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=${sig}`,
      },
      body,
    );
  };
  let r = await send('a=1&__proto__=x', '__proto__=x&a=1');
  assert.equal(r.status, 200, r.body);
  assert.deepEqual(JSON.parse(r.body).Keys, []);
  r = await send('__proto__=x&constructor=y', '__proto__=x&constructor=y');
  assert.equal(r.status, 200, r.body);
  // Signed without __proto__ (what a plain-object query map gives): another request, refused.
  r = await send('a=1&__proto__=x', 'a=1');
  assert.equal(r.status, 400, r.body);
  assert.equal(JSON.parse(r.body).__type, 'InvalidSignatureException');
  // The same request in absolute form (as a forward proxy would send it) is the same canonical request.
  r = await send('a=1&__proto__=x', '__proto__=x&a=1', `http://${host}`);
  assert.equal(r.status, 200, r.body);
  // A malformed percent-encoding is a refusal, not a crash.
  r = await send('a=%zz', 'a=%zz');
  assert.equal(r.status, 400, r.body);
  assert.equal(JSON.parse(r.body).__type, 'MalformedQueryString');
});
