// IPv6 spellings of IPv4 addresses and the egress policy: which forms are folded into the IPv4 address
// they reach (and so judged, and dialled, as it), and which stay IPv6 on purpose. One table, read by
// the policy (what the proxy judges) and by the relay's deny_ips check (what a name resolves to).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatIp, inRange, parseIp, parseRange } from '../../../src/policy/address.ts';
import { compilePolicy } from '../../../src/policy/policy.ts';

// [spelling, what it is folded to (null: stays IPv6, written canonically), why]
const FORMS: [string, string, string][] = [
  ['::ffff:169.254.169.254', '169.254.169.254', 'IPv4-mapped (RFC 4291 §2.5.5.2)'],
  ['::169.254.169.254', '169.254.169.254', 'IPv4-compatible (RFC 4291 §2.5.5.1, deprecated)'],
  ['::a9fe:a9fe', '169.254.169.254', 'IPv4-compatible in hex'],
  ['::ffff:0:169.254.169.254', '169.254.169.254', 'SIIT IPv4-translated (RFC 2765)'],
  ['::ffff:0:a9fe:a9fe', '169.254.169.254', 'SIIT in hex'],
  [
    '64:ff9b::169.254.169.254',
    '169.254.169.254',
    'NAT64 well-known prefix (RFC 6052): the translator dials the IPv4',
  ],
  ['64:ff9b::a9fe:a9fe', '169.254.169.254', 'NAT64 in hex'],
  ['::127.0.0.1', '127.0.0.1', 'IPv4-compatible loopback'],
  ['::2', '0.0.0.2', 'IPv4-compatible, in 0.0.0.0/8'],
  ['::', '::', 'the unspecified address stays IPv6'],
  ['::1', '::1', 'IPv6 loopback stays IPv6'],
  [
    '2002:a9fe:a9fe::1',
    '2002:a9fe:a9fe::1',
    '6to4 (RFC 3056): an IPv6 host behind a 6to4 router, not folded',
  ],
  [
    '64:ff9b:1::a9fe:a9fe',
    '64:ff9b:1::a9fe:a9fe',
    'local-use NAT64 (RFC 8215): translator-specific, not folded',
  ],
  ['1::a9fe:a9fe', '1::a9fe:a9fe', 'an ordinary IPv6 address'],
];

test('IPv6 forms that embed an IPv4 address: folded or kept, one decision per form', () => {
  for (const [spelling, folded, why] of FORMS) {
    const a = parseIp(spelling);
    assert.ok(a, `${spelling} parses`);
    assert.equal(formatIp(a), folded, `${spelling}: ${why}`);
    assert.equal(formatIp(parseIp(`[${spelling}]`)!), folded, `[${spelling}]`);
  }
});

test('with allow ::/0 and deny 169.254.169.254, no IPv6 spelling of the metadata address is allowed', () => {
  const policy = compilePolicy(['**', '::/0'], ['169.254.169.254']);
  for (const [spelling, folded] of FORMS) {
    if (folded !== '169.254.169.254') continue;
    const d = policy.check(`[${spelling}]`, 80);
    assert.equal(d.allowed, false, `${spelling}: ${d.reason}`);
    assert.equal(d.target, '169.254.169.254');
    assert.equal(d.rule, '169.254.169.254', `${spelling}: ${d.reason}`);
  }
  // Folded IPv4 loopback and 0.0.0.0/8 are reached only by a rule naming them, as their IPv4 spelling is.
  for (const spelling of ['::127.0.0.1', '::2', '::ffff:0:127.0.0.1', '64:ff9b::127.0.0.1'])
    assert.equal(
      compilePolicy(['0.0.0.0/0', '::/0'], []).check(`[${spelling}]`, 80).allowed,
      false,
      spelling,
    );
  // Kept as IPv6: judged by IPv6 rules (deny 2002::/16 to refuse 6to4 outright).
  assert.equal(policy.check('[2002:a9fe:a9fe::1]', 80).allowed, true);
  assert.equal(compilePolicy(['::/0'], ['2002::/16']).check('[2002:a9fe:a9fe::1]', 80).allowed, false);
});

test('deny ranges (the relay checks resolved addresses against them) cover every folded form', () => {
  const meta = parseRange('169.254.169.254');
  assert.ok(meta && typeof meta !== 'string');
  for (const [spelling, folded] of FORMS)
    assert.equal(inRange(parseIp(spelling)!, meta), folded === '169.254.169.254', spelling);
  // A rule written in a folded IPv6 form is the IPv4 range it embeds.
  for (const [rule, v4] of [
    ['::169.254.0.0/112', '169.254.0.0/16'],
    ['64:ff9b::/96', '0.0.0.0/0'],
    ['::ffff:0:10.0.0.0/104', '10.0.0.0/8'],
  ] as const) {
    const r = parseRange(rule);
    const want = parseRange(v4);
    assert.deepEqual(r, want, rule);
  }
});
