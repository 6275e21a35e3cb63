// Log redaction: whatever shape a secret is logged in (top-level field, nested object,
// request headers), the pino redaction in src/log/logger.ts keeps it off the line.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../../src/log/logger.ts';

const SECRET = 'S3CR3T-do-not-log';

test('secrets are redacted at the top level and nested, in every field name KMS and AWS use', () => {
  const lines: string[] = [];
  const log = createLogger({ level: 'trace', destination: { write: (l: string) => void lines.push(l) } });
  const shapes: Record<string, unknown>[] = [
    { Plaintext: SECRET },
    { PrivateKeyPlaintext: SECRET },
    { SharedSecret: SECRET },
    { SecretAccessKey: SECRET },
    { secretAccessKey: SECRET },
    { SessionToken: SECRET },
    { sessionToken: SECRET },
    { Token: SECRET },
    { authorization: SECRET },
    { Authorization: SECRET },
    { 'x-amz-security-token': SECRET },
    { 'x-aws-ec2-metadata-token': SECRET },
    { privateKey: SECRET },
    { reply: { Plaintext: SECRET, SharedSecret: SECRET } },
    { credentials: { secretAccessKey: SECRET, sessionToken: SECRET } },
    { headers: { authorization: SECRET, 'x-amz-security-token': SECRET } },
    { req: { headers: { authorization: SECRET } } },
  ];
  for (const fields of shapes) log.info(fields, 'probe');
  assert.equal(lines.length, shapes.length);
  for (const [i, line] of lines.entries()) {
    assert.ok(!line.includes(SECRET), `leaked: ${JSON.stringify(shapes[i])} -> ${line}`);
    assert.match(line, /\[redacted\]/);
  }
  // Redaction works on a copy: the caller's objects are left as they were.
  assert.equal((shapes[0] as { Plaintext: string }).Plaintext, SECRET);
});
