// The kernel structures transparent egress hands over (src/system/netfilter.ts, route.ts), checked field
// by field against the UAPI layouts (linux/netfilter_ipv4/ip_tables.h, linux/rtnetlink.h). The e2e test
// test/e2e/egress/transparent.test.ts installs them for real and reads them back with iptables-legacy-save.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  buildNatReplace,
  EMPTY_NAT_ENTRIES,
  installNatRules,
  type NetfilterOps,
  removeNatRules,
  transparentRules,
} from '../../../src/system/netfilter.ts';
import { addDefaultRouteViaLoopback, defaultRouteMessage } from '../../../src/system/route.ts';

interface Entry {
  offset: number;
  proto: number;
  dst: number;
  dmsk: number;
  invflags: number;
  match: string | null;
  dports: [number, number] | null;
  target: string;
  verdict: number | null;
  toPort: number | null;
}

/** Walks the entries of a struct ipt_replace the way the kernel's translate_table does. */
function parse(blob: Buffer) {
  const size = blob.readUInt32LE(40);
  assert.equal(blob.length, 96 + size, 'size is the byte length of the entries');
  const body = blob.subarray(96);
  const entries: Entry[] = [];
  for (let at = 0; at < body.length; ) {
    const targetOffset = body.readUInt16LE(at + 88);
    const next = body.readUInt16LE(at + 90);
    assert.equal(next % 8, 0, 'entries are 8-byte aligned');
    const hasMatch = targetOffset > 112;
    const t = at + targetOffset;
    const target = body.toString('latin1', t + 2, t + 31).replace(/\0.*$/s, '');
    assert.equal(body.readUInt16LE(t), next - targetOffset, 'target_size fills the entry');
    entries.push({
      offset: at,
      proto: body.readUInt16LE(at + 80),
      dst: body.readUInt32BE(at + 4),
      dmsk: body.readUInt32BE(at + 12),
      invflags: body.readUInt8(at + 83),
      match: hasMatch ? body.toString('latin1', at + 112 + 2, at + 112 + 31).replace(/\0.*$/s, '') : null,
      dports: hasMatch ? [body.readUInt16LE(at + 112 + 32 + 4), body.readUInt16LE(at + 112 + 32 + 6)] : null,
      target,
      verdict: target === '' ? body.readInt32LE(t + 32) : null,
      toPort: target === 'REDIRECT' ? body.readUInt16BE(t + 32 + 16) : null,
    });
    at += next;
  }
  const hooks = [0, 1, 2, 3, 4].map((h) => ({
    entry: blob.readUInt32LE(44 + 4 * h),
    underflow: blob.readUInt32LE(64 + 4 * h),
  }));
  return {
    name: blob.toString('latin1', 0, 32).replace(/\0.*$/s, ''),
    validHooks: blob.readUInt32LE(32),
    numEntries: blob.readUInt32LE(36),
    numCounters: blob.readUInt32LE(84),
    entries,
    hooks,
  };
}

test('the nat table: four chain policies, the redirects at the head of OUTPUT, an ERROR entry last', () => {
  const blob = buildNatReplace(transparentRules({ tcp: 40001, dns: 53, udpSink: 40002 }), 5);
  const t = parse(blob);
  assert.equal(t.name, 'nat');
  assert.equal(t.validHooks, 0b11011, 'PREROUTING, INPUT, OUTPUT, POSTROUTING');
  assert.equal(t.numEntries, 9);
  assert.equal(t.entries.length, 9);
  assert.equal(t.numCounters, 5);
  const at = (offset: number) => t.entries.findIndex((e) => e.offset === offset);
  // OUTPUT (hook 3) starts at the first rule; its underflow is its ACCEPT policy after the four rules.
  assert.equal(at(t.hooks[3]!.entry), 2);
  assert.equal(at(t.hooks[3]!.underflow), 6);
  for (const h of [0, 1, 4]) assert.equal(t.hooks[h]!.entry, t.hooks[h]!.underflow, `hook ${h} has no rules`);
  for (const i of [0, 1, 6, 7]) {
    assert.equal(t.entries[i]!.target, '');
    assert.equal(t.entries[i]!.verdict, -2, 'ACCEPT is -NF_ACCEPT-1');
    assert.equal(t.entries[i]!.proto, 0, 'a policy entry is unconditional');
  }
  assert.equal(t.entries[8]!.target, 'ERROR');
  const rules = t.entries.slice(2, 6);
  for (const r of rules) {
    assert.equal(r.dst, 0x7f000000);
    assert.equal(r.dmsk, 0xff000000);
    assert.equal(r.invflags, 0x10, '! -d (IPT_INV_DSTIP)');
    assert.equal(r.target, 'REDIRECT');
  }
  assert.deepEqual(
    rules.map((r) => [r.proto, r.match, r.dports, r.toPort]),
    [
      [17, 'udp', [53, 53], 53],
      [6, 'tcp', [53, 53], 53],
      [6, null, null, 40001],
      [17, null, null, 40002],
    ],
  );
});

test('an empty nat table is the policies and the ERROR entry', () => {
  const t = parse(buildNatReplace([], 9));
  assert.equal(t.entries.length, EMPTY_NAT_ENTRIES);
  assert.equal(t.numCounters, 9);
});

function fakeTable(numEntries: number) {
  const replaced: Buffer[] = [];
  const info = Buffer.alloc(84);
  info.write('nat');
  info.writeUInt32LE(numEntries, 76);
  const ops: NetfilterOps = {
    iptablesGet: (table, size) => {
      assert.equal(table, 'nat');
      assert.equal(size, 0);
      return info;
    },
    iptablesReplace: (blob) => void replaced.push(Buffer.from(blob)),
  };
  return { ops, replaced };
}

test('install refuses a nat table that already has rules; remove empties it with the right counter count', () => {
  const busy = fakeTable(7);
  assert.throws(() => installNatRules(transparentRules({ tcp: 1, dns: 53, udpSink: 2 }), busy.ops), {
    code: 'CLO_ERR_TRANSPARENT_SETUP',
    message: /already has 2 rule\(s\)/,
  });
  assert.equal(busy.replaced.length, 0);
  const empty = fakeTable(EMPTY_NAT_ENTRIES);
  installNatRules(transparentRules({ tcp: 1, dns: 53, udpSink: 2 }), empty.ops);
  assert.equal(parse(empty.replaced[0]!).numEntries, 9);
  const ours = fakeTable(9);
  removeNatRules(ours.ops);
  assert.equal(parse(ours.replaced[0]!).numCounters, 9);
  assert.equal(parse(ours.replaced[0]!).numEntries, EMPTY_NAT_ENTRIES);
});

test('a kernel without the nat table is a setup error that says so', () => {
  const ops: NetfilterOps = {
    iptablesGet: () => {
      throw Object.assign(new Error('getsockopt(IPT_SO_GET_INFO): No such file or directory (ENOENT)'), {
        code: 'ENOENT',
      });
    },
    iptablesReplace: () => assert.fail('not reached'),
  };
  assert.throws(() => installNatRules([], ops), {
    code: 'CLO_ERR_TRANSPARENT_SETUP',
    message: /no iptables nat table: CONFIG_IP_NF_NAT/,
  });
});

test('the route message: RTM_NEWROUTE default dev lo (ifindex 1) scope link src 127.0.0.1, with ACK', () => {
  const m = defaultRouteMessage(true);
  assert.equal(m.readUInt32LE(0), m.length);
  assert.equal(m.readUInt16LE(4), 24, 'RTM_NEWROUTE');
  assert.equal(m.readUInt16LE(6), 0x1 | 0x4 | 0x400 | 0x200, 'REQUEST | ACK | CREATE | EXCL');
  assert.deepEqual([...m.subarray(16, 28)], [2, 0, 0, 0, 254, 4, 253, 1, 0, 0, 0, 0]);
  assert.deepEqual([m.readUInt16LE(30), m.readUInt32LE(32)], [4, 1], 'RTA_OIF lo');
  assert.deepEqual([m.readUInt16LE(38), m.readUInt32BE(40)], [7, 0x7f000001], 'RTA_PREFSRC 127.0.0.1');
  const del = defaultRouteMessage(false);
  assert.equal(del.readUInt16LE(4), 25, 'RTM_DELROUTE');
  assert.equal(del.readUInt16LE(6), 0x1 | 0x4);
  assert.throws(
    () =>
      addDefaultRouteViaLoopback(() => {
        throw Object.assign(new Error('rtnetlink: File exists (EEXIST)'), { code: 'EEXIST' });
      }),
    { code: 'CLO_ERR_TRANSPARENT_SETUP', message: /a default route already exists/ },
  );
});
