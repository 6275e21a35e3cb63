// Log redaction: whatever shape and depth a secret is logged at (top-level field, nested objects, arrays,
// request headers), src/log/logger.ts keeps it off the line. Each check walks the whole line as written,
// so a secret anywhere in it is found, whatever paths the redaction knows about.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createLogger } from '../../../src/log/logger.ts';

const SECRET = 'S3CR3T-do-not-log';

/** Every field name KMS, AWS credentials and HTTP headers carry secrets in, as they are spelt there. */
const FIELDS = [
  'Plaintext',
  'PrivateKeyPlaintext',
  'SharedSecret',
  'SecretAccessKey',
  'secretAccessKey',
  'SessionToken',
  'sessionToken',
  'Token',
  'authorization',
  'Authorization',
  'x-amz-security-token',
  'x-aws-ec2-metadata-token',
  'privateKey',
];

function capture() {
  const lines: string[] = [];
  const log = createLogger({ level: 'trace', destination: { write: (l: string) => void lines.push(l) } });
  return { log, lines };
}

/** Paths (a.b[2].c) of every string in `v` that contains the secret. */
function leaks(v: unknown, path = '$'): string[] {
  if (typeof v === 'string') return v.includes(SECRET) ? [path] : [];
  if (Array.isArray(v)) return v.flatMap((x, i) => leaks(x, `${path}[${i}]`));
  if (v !== null && typeof v === 'object')
    return Object.entries(v).flatMap(([k, x]) => [
      ...(k.includes(SECRET) ? [`${path} (key)`] : []),
      ...leaks(x, `${path}.${k}`),
    ]);
  return [];
}

/** `{[field]: SECRET}` nested `depth` levels down, alternating objects and arrays, with harmless siblings. */
function plant(field: string, depth: number): Record<string, unknown> {
  let v: unknown = { [field]: SECRET, note: 'kept' };
  for (let d = 0; d < depth; d++) v = d % 3 === 2 ? [1, v, 'x'] : { [`level${d}`]: v, other: d };
  return { wrapper: v };
}

test('a secret-named field is redacted at every depth, in objects and arrays alike', () => {
  const { log, lines } = capture();
  const planted: Record<string, unknown>[] = [];
  for (const field of FIELDS)
    for (const depth of [0, 1, 2, 3, 5, 8, 13, 21]) planted.push(plant(field, depth));
  planted.push({ [FIELDS[0]!]: SECRET }); // top level, outside any wrapper
  planted.push({ req: { headers: Object.assign(Object.create(null), { authorization: SECRET }) } });
  planted.push({ list: [[[{ SECRETACCESSKEY: SECRET }]]] }); // any letter case
  for (const fields of planted) log.info(fields, 'probe');
  assert.equal(lines.length, planted.length);
  for (const [i, line] of lines.entries()) {
    assert.deepEqual(leaks(JSON.parse(line)), [], `leaked: ${JSON.stringify(planted[i])} -> ${line}`);
    assert.ok(!line.includes(SECRET), line);
    assert.match(line, /"\[redacted\]"/);
  }
  // Only the secret is replaced: its sibling and the structure around it are logged as they were.
  // planted[3] is Plaintext three levels down: only the secret is replaced, the rest is logged as it was.
  assert.match(
    lines[3]!,
    /"wrapper":\[1,\{"level1":\{"level0":\{"Plaintext":"\[redacted\]","note":"kept"\},"other":0\},"other":1\},"x"\]/,
  );
  // Redaction works on a copy: the caller's objects are left as they were.
  assert.equal(JSON.stringify(planted[3]).includes(SECRET), true);
});

test('deeper than the redaction walks, a value is dropped, never written', () => {
  const { log, lines } = capture();
  log.info(plant('Plaintext', 60), 'probe');
  assert.deepEqual(leaks(JSON.parse(lines[0]!)), []);
  assert.match(lines[0]!, /too deep to log/);
});

test('a cycle, an Error and a Buffer next to a secret are logged, and the secret is not', () => {
  const { log, lines } = capture();
  const cyclic: Record<string, unknown> = { Token: SECRET };
  cyclic.self = cyclic;
  log.info({ cyclic, err: new Error('boom'), raw: Buffer.from('ab') }, 'probe');
  assert.deepEqual(leaks(JSON.parse(lines[0]!)), []);
  assert.match(lines[0]!, /boom/);
  assert.match(lines[0]!, /Circular/);
});
