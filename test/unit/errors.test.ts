// src/errors.ts: the code table, docs/errors.md and the three wire formats agree.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import * as errors from '../../src/errors.ts';
import {
  CloisterError,
  ERROR_TABLE,
  renderJson,
  renderKms,
  renderText,
  toCloisterError,
} from '../../src/errors.ts';

const DOC = readFileSync(new URL('../../docs/errors.md', import.meta.url), 'utf8');

/** `### CLO_ERR_X` sections of docs/errors.md with the status each states ("HTTP status: 400" or "none"). */
function documented(): Map<string, number | null> {
  const out = new Map<string, number | null>();
  for (const section of DOC.split(/^### /m).slice(1)) {
    const code = /^(CLO_ERR_[A-Z0-9_]+)\s*$/m.exec(section)?.[1];
    assert.ok(code, `a ### heading in docs/errors.md is not a code: ${section.split('\n')[0]}`);
    const status = /^- HTTP status: (\d{3}|none)\b/m.exec(section)?.[1];
    assert.ok(status, `${code}: docs/errors.md gives no "- HTTP status:" line`);
    assert.ok(!out.has(code), `${code} is documented twice`);
    out.set(code, status === 'none' ? null : Number(status));
  }
  return out;
}

test('every code in ERROR_TABLE is documented in docs/errors.md with its status, and nothing else is', () => {
  const docs = documented();
  const table = Object.keys(ERROR_TABLE);
  assert.deepEqual([...docs.keys()].sort(), [...table].sort());
  for (const [code, spec] of Object.entries(ERROR_TABLE))
    assert.equal(
      docs.get(code),
      spec.status,
      `${code}: docs/errors.md and ERROR_TABLE disagree on the status`,
    );
  // Every section says when it happens and what to do.
  for (const section of DOC.split(/^### /m).slice(1)) {
    assert.match(section, /^- When: /m, section.split('\n')[0]);
    assert.match(section, /^- What to do: /m, section.split('\n')[0]);
  }
});

/** Constructor arguments for the classes that take more than a message. */
const SAMPLE_ARGS: Record<string, unknown[]> = {
  PolicyError: [[{ list: 'allow', index: 0, message: 'x' }]],
  RelayError: [13, 'x'],
  AttestationError: ['format', 'x'],
};

test('every error class carries a code of the table, and each code has exactly one class', () => {
  const classes = Object.values(errors).filter(
    (v): v is typeof CloisterError =>
      typeof v === 'function' && Object.prototype.isPrototypeOf.call(CloisterError.prototype, v.prototype),
  );
  const byCode = new Map<string, string>();
  for (const C of classes) {
    const args = SAMPLE_ARGS[C.name] ?? ['x'];
    const e = new (C as unknown as new (...a: unknown[]) => CloisterError)(...args);
    assert.ok(e instanceof CloisterError && e instanceof C, C.name);
    assert.ok(Object.hasOwn(ERROR_TABLE, e.code), `${C.name}: ${e.code} is not in ERROR_TABLE`);
    assert.equal(e.name, C.name, `${C.name} names itself`);
    assert.ok(!byCode.has(e.code), `${e.code} belongs to ${byCode.get(e.code)} and ${C.name}`);
    byCode.set(e.code, C.name);
  }
  // CLO_ERR_CONFIG lives next to the config loader (src/config/errors.ts); every other code has its class here.
  const missing = Object.keys(ERROR_TABLE).filter((c) => !byCode.has(c));
  assert.deepEqual(missing, ['CLO_ERR_CONFIG']);
});

test('instanceof CloisterError holds for an error made by another copy of the module', async () => {
  const other = await import(`../../src/errors.ts?copy=${Date.now()}`);
  const foreign = new other.EgressDeniedError('no');
  assert.notEqual(other.CloisterError, CloisterError, 'the test needs a second copy of the module');
  assert.ok(foreign instanceof CloisterError);
  assert.ok(!(new Error('plain') instanceof CloisterError));
  assert.ok(!(new errors.BadRequestError('x') instanceof errors.NotFoundError));
});

test('the three wire formats carry the code', () => {
  const denied = new errors.EgressDeniedError('blocked by egress security policy: x');
  assert.deepEqual(renderText(denied), {
    status: 403,
    headers: { 'content-type': 'text/plain; charset=utf-8', 'x-cloister-error': 'CLO_ERR_EGRESS_DENIED' },
    body: 'blocked by egress security policy: x\n',
  });
  const nsm = new errors.NsmUnavailableError('NSM attestation failed: InternalError');
  const json = renderJson(nsm);
  assert.equal(json.status, 503);
  assert.deepEqual(JSON.parse(json.body), {
    error: 'NSM attestation failed: InternalError',
    code: 'CLO_ERR_NSM',
  });
  const kms = renderKms(new errors.KmsTimeoutError('no answer'), 'cloister KMS proxy: ');
  assert.equal(kms.status, 504);
  assert.equal(kms.headers['x-amzn-errortype'], 'DependencyTimeoutException');
  assert.deepEqual(JSON.parse(kms.body), {
    __type: 'DependencyTimeoutException',
    message: 'cloister KMS proxy: no answer',
  });
});

test('anything thrown that is not a CloisterError becomes CLO_ERR_INTERNAL with it as the cause', () => {
  const boom = new TypeError('boom');
  const e = toCloisterError(boom);
  assert.equal(e.code, 'CLO_ERR_INTERNAL');
  assert.equal(e.status, 500);
  assert.equal(e.cause, boom);
  const same = new errors.NotFoundError('x');
  assert.equal(toCloisterError(same), same);
});
