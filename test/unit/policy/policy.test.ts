// The egress policy as a table: [allow, deny, host, port, expected rule or null] where the expected rule is
// the one that must decide (as written) and the verdict follows from the list it sits in. Covers Enclaver's
// own tests (docs/reference/enclaver.md, "Egress policy") and every hole of "Policy holes in odyn".
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compilePolicy, PolicyError } from '../../../src/policy/policy.ts';

type Case = [
  allow: string[],
  deny: string[],
  host: string,
  port: number,
  allowed: boolean,
  rule: string | null,
];

const ALL = ['**', '0.0.0.0/0', '::/0'];
const META = ['169.254.169.254', '10.0.0.0/8'];

const CASES: Case[] = [
  // Enclaver's upstream conformance cases (domain_filter.rs / ip_filter.rs)
  [['example.com'], [], 'example.com', 443, true, 'example.com'],
  [['example.com'], [], 'Example.COM', 443, true, 'example.com'],
  [['example.com'], [], 'example.net', 443, false, null],
  [['example.com'], [], 'abc.example.com', 443, false, null],
  [['example.com'], [], 'foo.com', 443, false, null],
  [['*.com'], [], 'example.com', 80, true, '*.com'],
  [['*.com'], [], 'cnn.CoM', 80, true, '*.com'],
  [['*.com'], [], 'news.ycombinator.com', 80, false, null],
  [['*.com'], [], 'beta.client1.saas.com', 80, false, null],
  [['foo.*.com'], [], 'foo.example.com', 80, true, 'foo.*.com'],
  [['foo.*.com'], [], 'foo.bar.example.com', 80, false, null],
  [['**.amazonaws.com'], [], 'kms.us-east-1.amazonaws.com', 443, true, '**.amazonaws.com'],
  [['**.amazonaws.com'], [], 's3.amazonaws.com', 443, true, '**.amazonaws.com'],
  [['**.amazonaws.com'], [], 'amazonaws.com', 443, false, null],
  [['**.amazonaws.com'], [], 'example.com', 443, false, null],
  [['66.254.33.22/24'], [], '66.254.33.1', 1, true, '66.254.33.22/24'],
  [['66.254.33.22/24'], [], '66.254.33.255', 1, true, '66.254.33.22/24'],
  [['66.254.33.22/24'], [], '66.254.34.1', 1, false, null],
  [['66.254.33.22/24'], [], '67.254.33.22', 1, false, null],
  [['10.0.0.0/255.0.0.0'], [], '10.9.9.9', 1, true, '10.0.0.0/255.0.0.0'],
  [['*.*.com'], [], 'a.b.com', 1, true, '*.*.com'],
  [['a.*'], [], 'a.com', 1, true, 'a.*'],
  [['a.*'], [], 'a.b.com', 1, false, null],
  // deny wins, default deny
  [['**'], ['evil.com'], 'evil.com', 443, false, 'evil.com'],
  [['**'], ['evil.com'], 'x.evil.com', 443, true, '**'],
  [['**'], ['**.evil.com', 'evil.com'], 'x.evil.com', 443, false, '**.evil.com'],
  [[], [], 'example.com', 443, false, null],
  // P1 trailing dot, and case
  [['**'], ['evil.com'], 'evil.com.', 443, false, 'evil.com'],
  [['**'], ['evil.com'], 'EVIL.COM.', 443, false, 'evil.com'],
  [['**'], ['**.evil.com'], 'x.evil.com.', 443, false, '**.evil.com'],
  [['**.example.com'], ['evil.example.com'], 'evil.example.com.', 443, false, 'evil.example.com'],
  [['example.com'], [], 'example.com.', 443, true, 'example.com'],
  [['example.com.'], [], 'example.com', 443, true, 'example.com.'],
  [['**'], [], 'example.com..', 443, false, null],
  // P2 IPv4-mapped IPv6
  [ALL, META, '::ffff:169.254.169.254', 80, false, '169.254.169.254'],
  [ALL, META, '[::ffff:a9fe:a9fe]', 80, false, '169.254.169.254'],
  [['10.0.0.0/8'], [], '::ffff:10.2.3.4', 1, true, '10.0.0.0/8'],
  [['::ffff:10.0.0.0/104'], [], '10.2.3.4', 1, true, '::ffff:10.0.0.0/104'],
  [['::/0'], [], '10.2.3.4', 1, false, null],
  [ALL, META, '10.1.2.3', 1, false, '10.0.0.0/8'],
  // P3 numeric, octal, hex and short IPv4 spellings are the address they mean
  [['**'], ['169.254.169.254'], '2852039166', 80, false, '169.254.169.254'],
  [['*'], ['169.254.169.254'], '2852039166', 80, false, '169.254.169.254'],
  [['**'], [], '0x7f000001', 80, false, null],
  [['**'], [], '127.1', 80, false, null],
  [['**'], [], '0177.0.0.1', 80, false, null],
  [['**'], [], '0x7f.1', 80, false, null],
  [ALL, ['169.254.169.254'], '0251.0376.0251.0376', 80, false, '169.254.169.254'],
  [['169.254.169.254'], [], '0xa9.0xfe.0xa9.0xfe', 80, true, '169.254.169.254'],
  [['169.254.169.254'], [], '169.254.169.254.', 80, true, '169.254.169.254'],
  [ALL, ['169.254.169.254'], '0xa9fea9fe', 80, false, '169.254.169.254'],
  [ALL, ['169.254.169.254'], '169.254.43518', 80, false, '169.254.169.254'],
  [['[2001:db8::/32]:443'], [], '2001:db8::5', 443, true, '[2001:db8::/32]:443'],
  [['**'], [], '1.2.3.4.5', 80, false, null],
  [['**'], [], 'foo.123', 80, false, null],
  // P4 is enforced after DNS by the relay (see egress-proxy.test.ts); a name is still just a name here
  [['**'], ['169.254.169.254'], '169.254.169.254.nip.io', 80, true, '**'],
  // P5 host / localhost only through a rule that names them
  [['**'], [], 'host', 80, false, null],
  [['*'], [], 'localhost', 80, false, null],
  [['**'], [], 'db.localhost', 80, false, null],
  [['host'], [], 'HOST', 80, true, 'host'],
  [['localhost:8080'], [], 'localhost', 8080, true, 'localhost:8080'],
  [ALL, [], '127.0.0.1', 80, false, null],
  [ALL, [], '::1', 80, false, null],
  [ALL, [], '0.0.0.0', 80, false, null],
  [['127.0.0.1'], [], '127.0.0.1', 80, true, '127.0.0.1'],
  [['127.0.0.0/8'], [], '127.9.9.9', 80, true, '127.0.0.0/8'],
  [['::1'], [], '[::1]', 80, true, '::1'],
  // P7 ports
  [['example.com:443'], [], 'example.com', 443, true, 'example.com:443'],
  [['example.com:443'], [], 'example.com', 80, false, null],
  [['*.example.com:443'], [], 'api.example.com', 443, true, '*.example.com:443'],
  [['[2001:db8::1]:8200'], [], '2001:db8::1', 8200, true, '[2001:db8::1]:8200'],
  [['[2001:db8::1]:8200'], [], '[2001:db8::1]', 8201, false, null],
  [['10.0.0.0/8:5432'], [], '10.1.1.1', 5432, true, '10.0.0.0/8:5432'],
  [['10.0.0.0/8:5432'], [], '10.1.1.1', 5433, false, null],
  [['**'], ['**:25'], 'mail.example.com', 25, false, '**:25'],
  [['**'], [], 'example.com', 0, false, null],
  [['**'], [], 'example.com', 65536, false, null],
  // P9 empty labels, P10 trimming, junk characters
  [['*.com'], [], '.com', 80, false, null],
  [['**'], [], '', 80, false, null],
  [[' example.com '], [], 'example.com', 80, true, ' example.com '],
  [['**'], [], 'a b', 80, false, null],
  [['**'], [], 'a/b', 80, false, null],
  [['**'], [], 'user@example.com', 80, false, null],
  [['**'], [], 'example.com\r\nX-Injected: 1', 80, false, null],
  [['**'], [], 'ex%61mple.com', 80, false, null],
  [['**'], [], 'example.com:443', 443, false, null],
  // P11 IPv6 literals, with and without brackets
  [['2001:db8::/32'], [], '[2001:DB8::1]', 443, true, '2001:db8::/32'],
  [['2001:db8::/32'], [], '2001:db8:0:0:0:0:0:1', 443, true, '2001:db8::/32'],
  [['::/0'], [], 'fe80::1%eth0', 443, false, null],
  // IDN to punycode
  [['xn--bcher-kva.de'], [], 'bücher.de', 443, true, 'xn--bcher-kva.de'],
  [['bücher.de'], [], 'xn--bcher-kva.de', 443, true, 'bücher.de'],
  [['**'], ['bücher.de'], 'BÜCHER.de', 443, false, 'bücher.de'],
  // underscore names (SRV-style, some cloud endpoints) are names
  [['**'], [], '_acme.example.com', 443, true, '**'],
];

test(`policy corpus: ${CASES.length} cases decide with the expected rule`, () => {
  assert.ok(CASES.length >= 60);
  for (const [allow, deny, host, port, allowed, rule] of CASES) {
    const d = compilePolicy(allow, deny).check(host, port);
    const label = `allow=${JSON.stringify(allow)} deny=${JSON.stringify(deny)} ${JSON.stringify(host)}:${port}`;
    assert.equal(d.allowed, allowed, `${label}: ${d.reason}`);
    assert.equal(d.rule, rule, `${label}: ${d.reason}`);
    // The explanation names the deciding rule, or says the host is not in the policy / is invalid.
    if (rule !== null) assert.ok(d.reason.includes(`'${rule}'`), d.reason);
    else assert.match(d.reason, /not in the egress policy|invalid host|out of range/);
  }
});

test('the target handed to the dialler is the normalised host', () => {
  const p = compilePolicy(['**', '0.0.0.0/0', '::/0'], []);
  assert.equal(p.check('WWW.Example.COM.', 443).target, 'www.example.com');
  assert.equal(p.check('0x08.8.8.8', 53).target, '8.8.8.8');
  assert.equal(p.check('[2001:DB8:0::1]', 443).target, '2001:db8::1');
  assert.equal(p.check('::ffff:8.8.4.4', 443).target, '8.8.4.4');
  assert.equal(p.check('bücher.de', 443).target, 'xn--bcher-kva.de');
});

test('invalid rules are a config error listing every bad rule (P6, P8, P10 and friends)', () => {
  const allow = [
    'example.com',
    '10.0.0.0/33',
    'foo.**.com',
    '*.com:99999',
    ' ',
    '127.1',
    'a*.com',
    '[::1',
    'a..b',
    'x:y',
    '2001:db8::/129',
    '10.0.0.0/255.0.255.0',
    'exa mple.com',
    '::ffff:0:0/64',
    '[example.com]:443',
    '2852039166',
  ];
  const deny = ['0x7f.1/8', '169.254.169.254', '', '**.ok.com:0'];
  let err: unknown;
  try {
    compilePolicy(allow, deny);
  } catch (e) {
    err = e;
  }
  assert.ok(err instanceof PolicyError);
  const where = err.errors.map((e) => `${e.list}[${e.index}]`);
  assert.deepEqual(where, [
    ...allow.map((_, i) => `allow[${i}]`).filter((w) => w !== 'allow[0]'),
    'deny[0]',
    'deny[2]',
    'deny[3]',
  ]);
  for (const e of err.errors) assert.ok(e.message.length > 10, e.message);
  assert.match(err.message, /egress\.allow\[1\]: '10\.0\.0\.0\/33': prefix length \/33 is too long/);
  assert.match(err.message, /'\*\*' may only be the leftmost label/);
  assert.match(err.message, /it means 127\.0\.0\.1/);
});
