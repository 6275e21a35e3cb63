// The iptables (legacy) nat table that transparent egress needs, built byte by byte and handed to the
// kernel with IPT_SO_SET_REPLACE through the addon, so the app's image needs no iptables binary (the Nitro
// kernel, 4.14, has legacy iptables and no nf_tables; docs/decisions.md, "Transparent egress rules").
//
// The layouts are the kernel's UAPI structs (linux/netfilter_ipv4/ip_tables.h), identical on x86_64 and
// arm64 (all fields naturally aligned, 64-bit counters). What is built is what this iptables command
// would leave, as `iptables-legacy-save -t nat` shows it (test/e2e/egress/transparent-rules.test.ts):
//
//   -A OUTPUT ! -d 127.0.0.0/8 -p udp -m udp --dport 53 -j REDIRECT --to-ports <dns>
//   -A OUTPUT ! -d 127.0.0.0/8 -p tcp -m tcp --dport 53 -j REDIRECT --to-ports <dns>
//   -A OUTPUT ! -d 127.0.0.0/8 -p tcp -j REDIRECT --to-ports <tcp>
//   -A OUTPUT ! -d 127.0.0.0/8 -p udp -j REDIRECT --to-ports <udp sink>
//
// cloister's own traffic needs no exclusion rule: all of it is vsock (not IP) or to 127.0.0.1.
import { TransparentSetupError } from '../errors.ts';
import { loadNative } from '../native.ts';

const TABLE = 'nat';
const NAME_LEN = 32; // XT_TABLE_MAXNAMELEN, XT_EXTENSION_MAXNAMELEN + revision
const HOOKS = 5; // NF_INET_NUMHOOKS
const PRE_ROUTING = 0;
const LOCAL_IN = 1;
const LOCAL_OUT = 3;
const POST_ROUTING = 4;
/** The hooks the nat table has, in the order iptables lays out their chains. */
const NAT_HOOKS = [PRE_ROUTING, LOCAL_IN, LOCAL_OUT, POST_ROUTING];
const VALID_HOOKS = NAT_HOOKS.reduce((m, h) => m | (1 << h), 0);

const IPT_ENTRY = 112; // sizeof(struct ipt_entry): struct ipt_ip (84), nfcache, offsets, comefrom, counters
const TARGET_OFFSET = 88;
const NEXT_OFFSET = 90;
const IP_PROTO = 80; // struct ipt_ip.proto
const IP_INVFLAGS = 83;
const IPT_INV_DSTIP = 0x10;
const XT_HEADER = 32; // struct xt_entry_match / xt_entry_target: u16 size, name[29], u8 revision
const REPLACE_HEADER = 96; // sizeof(struct ipt_replace) (the counters pointer at 88 is the addon's)
const VERDICT_ACCEPT = -2; // -NF_ACCEPT - 1
const NF_NAT_RANGE_PROTO_SPECIFIED = 2;

export const IPPROTO_TCP = 6;
export const IPPROTO_UDP = 17;

const align8 = (n: number) => (n + 7) & ~7;

/** One `-A OUTPUT ! -d <exclude> -p <proto> [--dport <dport>] -j REDIRECT --to-ports <toPort>` rule. */
export interface RedirectRule {
  proto: typeof IPPROTO_TCP | typeof IPPROTO_UDP;
  /** Only this destination port (absent: any). */
  dport?: number;
  toPort: number;
}

/** The rules of transparent mode, in order (first match wins). */
export function transparentRules(ports: { tcp: number; dns: number; udpSink: number }): RedirectRule[] {
  return [
    { proto: IPPROTO_UDP, dport: 53, toPort: ports.dns },
    { proto: IPPROTO_TCP, dport: 53, toPort: ports.dns },
    { proto: IPPROTO_TCP, toPort: ports.tcp },
    { proto: IPPROTO_UDP, toPort: ports.udpSink },
  ];
}

function xtHeader(buf: Buffer, at: number, size: number, name: string, revision = 0): void {
  buf.writeUInt16LE(size, at);
  buf.write(name, at + 2, 28, 'latin1');
  buf.writeUInt8(revision, at + 2 + 29);
}

/** An ipt_entry with its match (at most one) and target. */
function entry(
  ip: { proto?: number; excludeLoopback?: boolean },
  match: Buffer | null,
  target: Buffer,
): Buffer {
  const targetOffset = IPT_ENTRY + (match?.length ?? 0);
  const e = Buffer.alloc(targetOffset + target.length);
  if (ip.excludeLoopback) {
    // dst 127.0.0.0 mask 255.0.0.0, inverted (network byte order in struct in_addr).
    e.writeUInt32BE(0x7f000000, 4);
    e.writeUInt32BE(0xff000000, 12);
    e.writeUInt8(IPT_INV_DSTIP, IP_INVFLAGS);
  }
  if (ip.proto) e.writeUInt16LE(ip.proto, IP_PROTO);
  e.writeUInt16LE(targetOffset, TARGET_OFFSET);
  e.writeUInt16LE(e.length, NEXT_OFFSET);
  match?.copy(e, IPT_ENTRY);
  target.copy(e, targetOffset);
  return e;
}

/** `-m tcp|udp --dport N`: struct xt_tcp / xt_udp start the same way (spts[2], dpts[2]). */
function portMatch(proto: number, dport: number): Buffer {
  const m = Buffer.alloc(XT_HEADER + 16);
  xtHeader(m, 0, m.length, proto === IPPROTO_TCP ? 'tcp' : 'udp');
  m.writeUInt16LE(0, XT_HEADER); // spts: 0-65535 (host byte order)
  m.writeUInt16LE(0xffff, XT_HEADER + 2);
  m.writeUInt16LE(dport, XT_HEADER + 4);
  m.writeUInt16LE(dport, XT_HEADER + 6);
  return m;
}

function standardTarget(verdict: number): Buffer {
  const t = Buffer.alloc(align8(XT_HEADER + 4));
  xtHeader(t, 0, t.length, '');
  t.writeInt32LE(verdict, XT_HEADER);
  return t;
}

function errorTarget(name: string): Buffer {
  const t = Buffer.alloc(align8(XT_HEADER + 30));
  xtHeader(t, 0, t.length, 'ERROR');
  t.write(name, XT_HEADER, 29, 'latin1');
  return t;
}

/** REDIRECT revision 0: struct nf_nat_ipv4_multi_range_compat with one range, ports only. */
function redirectTarget(port: number): Buffer {
  const t = Buffer.alloc(align8(XT_HEADER + 20));
  xtHeader(t, 0, t.length, 'REDIRECT');
  t.writeUInt32LE(1, XT_HEADER); // rangesize
  t.writeUInt32LE(NF_NAT_RANGE_PROTO_SPECIFIED, XT_HEADER + 4); // flags
  t.writeUInt16BE(port, XT_HEADER + 16); // min.all, network byte order
  t.writeUInt16BE(port, XT_HEADER + 18); // max.all
  return t;
}

function ruleEntry(r: RedirectRule): Buffer {
  return entry(
    { proto: r.proto, excludeLoopback: true },
    r.dport === undefined ? null : portMatch(r.proto, r.dport),
    redirectTarget(r.toPort),
  );
}

/**
 * A complete struct ipt_replace for the nat table: every chain's policy ACCEPT, `rules` at the head of
 * OUTPUT. `numCounters` is the number of entries of the table being replaced (the kernel insists).
 */
export function buildNatReplace(rules: readonly RedirectRule[], numCounters: number): Buffer {
  const entries: Buffer[] = [];
  const hookEntry = new Array<number>(HOOKS).fill(0);
  const underflow = new Array<number>(HOOKS).fill(0);
  let offset = 0;
  const push = (b: Buffer) => {
    entries.push(b);
    offset += b.length;
  };
  for (const hook of NAT_HOOKS) {
    hookEntry[hook] = offset;
    if (hook === LOCAL_OUT) for (const r of rules) push(ruleEntry(r));
    underflow[hook] = offset;
    push(entry({}, null, standardTarget(VERDICT_ACCEPT)));
  }
  push(entry({}, null, errorTarget('ERROR')));
  const body = Buffer.concat(entries);
  const head = Buffer.alloc(REPLACE_HEADER);
  head.write(TABLE, 0, NAME_LEN - 1, 'latin1');
  head.writeUInt32LE(VALID_HOOKS, 32);
  head.writeUInt32LE(entries.length, 36);
  head.writeUInt32LE(body.length, 40);
  for (let h = 0; h < HOOKS; h++) {
    head.writeUInt32LE(hookEntry[h]!, 44 + 4 * h);
    head.writeUInt32LE(underflow[h]!, 64 + 4 * h);
  }
  head.writeUInt32LE(numCounters, 84);
  return Buffer.concat([head, body]);
}

export interface TableInfo {
  validHooks: number;
  numEntries: number;
  size: number;
}

/** Decodes struct ipt_getinfo. */
export function parseTableInfo(raw: Buffer): TableInfo {
  if (raw.length < 84) throw new Error(`struct ipt_getinfo is 84 bytes, got ${raw.length}`);
  return { validHooks: raw.readUInt32LE(32), numEntries: raw.readUInt32LE(76), size: raw.readUInt32LE(80) };
}

/** Entries of a nat table with no rules: the four chain policies and the closing ERROR entry. */
export const EMPTY_NAT_ENTRIES = NAT_HOOKS.length + 1;

/** What kernel interfaces the rules go through (the addon; tests may pass another). */
export interface NetfilterOps {
  iptablesGet(table: string, size: number): Buffer;
  iptablesReplace(blob: Uint8Array): void;
}

function setupError(what: string, err: unknown): TransparentSetupError {
  const e = err as NodeJS.ErrnoException;
  const hint =
    e.code === 'ENOENT'
      ? ' (the kernel has no iptables nat table: CONFIG_IP_NF_NAT, or the iptable_nat module, is missing)'
      : e.code === 'EPERM'
        ? ' (cloister needs CAP_NET_ADMIN and CAP_NET_RAW)'
        : '';
  return new TransparentSetupError(`${what}: ${e.message}${hint}`, { cause: err });
}

/**
 * Installs the redirect rules in the (empty) nat table. Refuses a table that already has rules: cloister
 * replaces the whole table and restores it empty on exit, so it must not silently drop someone else's.
 */
export function installNatRules(rules: readonly RedirectRule[], ops: NetfilterOps = loadNative()): void {
  let info: TableInfo;
  try {
    info = parseTableInfo(ops.iptablesGet(TABLE, 0));
  } catch (err) {
    throw setupError('cannot read the iptables nat table', err);
  }
  if (info.numEntries !== EMPTY_NAT_ENTRIES)
    throw new TransparentSetupError(
      `the iptables nat table already has ${info.numEntries - EMPTY_NAT_ENTRIES} rule(s) or chain(s); ` +
        'transparent egress replaces the whole table and needs it empty',
    );
  try {
    ops.iptablesReplace(buildNatReplace(rules, info.numEntries));
  } catch (err) {
    throw setupError('cannot install the transparent egress rules in the iptables nat table', err);
  }
}

/** Empties the nat table again (every chain back to its ACCEPT policy alone). */
export function removeNatRules(ops: NetfilterOps = loadNative()): void {
  const info = parseTableInfo(ops.iptablesGet(TABLE, 0));
  ops.iptablesReplace(buildNatReplace([], info.numEntries));
}
