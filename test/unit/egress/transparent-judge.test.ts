// judgeTransparent (src/egress/transparent.ts): a redirected connection arrives with an address only;
// IP rules decide first, then the names the DNS stub bound to that address, each with this port.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NameBindings } from '../../../src/egress/name-bindings.ts';
import { judgeTransparent } from '../../../src/egress/transparent.ts';
import { compilePolicy } from '../../../src/policy/policy.ts';

const policy = compilePolicy(
  ['api.example.com:443', 'db.example.com:5432', '198.51.100.0/24:443', '**.wild.example'],
  ['198.51.100.66', 'bad.wild.example'],
);
const check = (host: string, port: number) => policy.check(host, port);

function bound(): NameBindings {
  const b = new NameBindings();
  b.bind('api.example.com', ['203.0.113.1'], 60);
  b.bind('db.example.com', ['203.0.113.2', '203.0.113.3'], 60);
  b.bind('api.example.com', ['203.0.113.3'], 60); // shared by two names
  b.bind('bad.wild.example', ['203.0.113.4'], 60); // (the stub never answers a denied name; a stale bind)
  return b;
}

test('an IP rule allows by itself; an IP deny rule wins over any name', () => {
  const b = bound();
  b.bind('api.example.com', ['198.51.100.66'], 60);
  const ip = judgeTransparent(check, b, '198.51.100.7', 443);
  assert.equal(ip.decision.allowed, true);
  assert.equal(ip.decision.rule, '198.51.100.0/24:443');
  assert.equal(ip.boundTo, null);
  const denied = judgeTransparent(check, b, '198.51.100.66', 443);
  assert.equal(denied.decision.allowed, false);
  assert.equal(denied.decision.rule, '198.51.100.66');
});

test('an address the stub returned for an allowed name is allowed on that name rule ports only', () => {
  const b = bound();
  const ok = judgeTransparent(check, b, '203.0.113.1', 443);
  assert.equal(ok.decision.allowed, true);
  assert.equal(ok.boundTo, 'api.example.com');
  assert.equal(ok.decision.rule, 'api.example.com:443');
  assert.equal(ok.decision.target, '203.0.113.1', 'the address is what is dialled');
  assert.match(ok.decision.reason, /^203\.0\.113\.1:443 \(resolved for api\.example\.com\): /);
  const port = judgeTransparent(check, b, '203.0.113.1', 5432);
  assert.equal(port.decision.allowed, false, "another name's port is not opened");
  assert.match(port.decision.reason, /resolved for api\.example\.com, whose rules do not allow port 5432/);
});

test('an address shared by two names opens each name its own ports', () => {
  const b = bound();
  assert.equal(judgeTransparent(check, b, '203.0.113.3', 443).boundTo, 'api.example.com');
  assert.equal(judgeTransparent(check, b, '203.0.113.3', 5432).boundTo, 'db.example.com');
  assert.equal(judgeTransparent(check, b, '203.0.113.3', 22).decision.allowed, false);
});

test('an address nobody resolved, or bound only to a denied name, is denied naming why', () => {
  const b = bound();
  const none = judgeTransparent(check, b, '192.0.2.1', 443);
  assert.equal(none.decision.allowed, false);
  assert.equal(none.decision.rule, null);
  assert.match(none.decision.reason, /192\.0\.2\.1:443 is not in the egress policy/);
  const bad = judgeTransparent(check, b, '203.0.113.4', 443);
  assert.equal(bad.decision.allowed, false);
  assert.equal(bad.decision.rule, 'bad.wild.example');
  assert.match(bad.decision.reason, /denied by rule 'bad\.wild\.example'/);
});

test('a binding ends with its TTL (plus grace): the address is denied again', () => {
  let now = 0;
  const b = new NameBindings({ now: () => now, graceS: 0 });
  b.bind('api.example.com', ['203.0.113.1'], 10);
  assert.equal(judgeTransparent(check, b, '203.0.113.1', 443).decision.allowed, true);
  now = 10_001;
  assert.equal(judgeTransparent(check, b, '203.0.113.1', 443).decision.allowed, false);
});
