// IP addresses and CIDR ranges for the egress policy: strict parsing (no octal, hex or short forms
// in rules), IPv6 forms that reach an IPv4 address folded into it (EMBEDS_IPV4), and canonical text for logs and the wire.
// Addresses are bigints so one prefix test serves both families.
import { isIPv4, isIPv6 } from 'node:net';

export type Family = 4 | 6;

export interface IpAddr {
  family: Family;
  value: bigint;
}

export interface IpRange {
  family: Family;
  /** Network address (host bits cleared). */
  base: bigint;
  prefix: number;
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };

/** Strict dotted quad: four decimal octets, no leading zeros (std::net / ipnetwork rules). */
function parseIPv4(text: string): bigint | null {
  if (!isIPv4(text)) return null;
  const parts = text.split('.');
  let v = 0n;
  for (const p of parts) {
    if (p.length > 1 && p.startsWith('0')) return null;
    v = (v << 8n) | BigInt(Number(p));
  }
  return v;
}

function parseIPv6(text: string): bigint | null {
  // Zone ids (fe80::1%eth0) name an interface of whoever dials: meaningless across the boundary.
  if (text.includes('%') || !isIPv6(text)) return null;
  let s = text;
  const lastColon = s.lastIndexOf(':');
  const last = s.slice(lastColon + 1);
  if (last.includes('.')) {
    // An embedded dotted quad (::ffff:1.2.3.4) is the last two 16-bit groups.
    const v4 = parseIPv4(last);
    if (v4 === null) return null;
    s = `${s.slice(0, lastColon + 1)}${(v4 >> 16n).toString(16)}:${(v4 & 0xffffn).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  if (fill < 0) return null;
  const groups = [...head, ...new Array<string>(fill).fill('0'), ...tail];
  if (groups.length !== 8) return null;
  let v = 0n;
  for (const g of groups) {
    if (!/^[0-9a-fA-F]{1,4}$/.test(g)) return null;
    v = (v << 16n) | BigInt(Number.parseInt(g, 16));
  }
  return v;
}

/**
 * IPv6 /96 prefixes whose last 32 bits are an IPv4 address that a connection to them reaches. Each is
 * folded into that IPv4 address, so no spelling of an address escapes an IPv4 rule (odyn bug P2):
 *   ::ffff:0:0/96   IPv4-mapped (RFC 4291 §2.5.5.2): a dual-stack socket dials the IPv4 address;
 *   ::/96           IPv4-compatible (RFC 4291 §2.5.5.1, deprecated): Linux's sit driver tunnels to it;
 *                   :: and ::1 are excluded, they are IPv6's own unspecified and loopback addresses;
 *   ::ffff:0:0:0/96 SIIT IPv4-translated (RFC 2765): a translator dials the IPv4 address;
 *   64:ff9b::/96    NAT64 well-known prefix (RFC 6052): the NAT64 gateway dials the IPv4 address.
 * Deliberately not folded: 6to4 (2002::/16, RFC 3056, deprecated by RFC 7526) names an IPv6 host behind
 * a 6to4 router, not a service on the router's IPv4 address; the local-use NAT64 prefix 64:ff9b:1::/48
 * (RFC 8215) and network-specific NAT64 prefixes embed the address where their operator chose. Both are
 * judged as the IPv6 addresses they are (deny 2002::/16 to refuse 6to4 outright).
 */
const EMBEDS_IPV4 = [0n, 0xffffn, 0xffff0000n, 0x64ff9bn << 64n];

function unmap(a: IpAddr): IpAddr {
  if (a.family !== 6 || !EMBEDS_IPV4.includes(a.value >> 32n) || a.value <= 1n) return a;
  return { family: 4, value: a.value & 0xffffffffn };
}

/** Parses a strict IPv4 or IPv6 literal (brackets allowed around IPv6). IPv6 embedding IPv4 becomes IPv4. */
export function parseIp(text: string): IpAddr | null {
  const t = text.startsWith('[') && text.endsWith(']') ? text.slice(1, -1) : text;
  const v4 = parseIPv4(t);
  if (v4 !== null) return { family: 4, value: v4 };
  const v6 = parseIPv6(t);
  if (v6 !== null) return unmap({ family: 6, value: v6 });
  return null;
}

export function formatIp(a: IpAddr): string {
  if (a.family === 4) {
    const v = a.value;
    return [24n, 16n, 8n, 0n].map((s) => String((v >> s) & 0xffn)).join('.');
  }
  const groups: number[] = [];
  for (let i = 7; i >= 0; i--) groups.push(Number((a.value >> BigInt(i * 16)) & 0xffffn));
  // Longest run of >= 2 zero groups becomes '::' (RFC 5952).
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestAt < 0) return hex.join(':');
  return `${hex.slice(0, bestAt).join(':')}::${hex.slice(bestAt + bestLen).join(':')}`;
}

export function formatRange(r: IpRange): string {
  return `${formatIp({ family: r.family, value: r.base })}/${r.prefix}`;
}

/** IPv4 netmask such as 255.255.0.0 -> 16; null if the mask is not contiguous. */
function maskToPrefix(mask: bigint): number | null {
  let n = 0;
  for (let bit = 31; bit >= 0 && (mask >> BigInt(bit)) & 1n; bit--) n++;
  const rebuilt = n === 0 ? 0n : ((1n << BigInt(n)) - 1n) << BigInt(32 - n);
  return rebuilt === mask ? n : null;
}

/**
 * Parses `addr`, `addr/prefix` or `a.b.c.d/netmask` (ipnetwork's forms; host bits allowed and masked).
 * Returns an error string for something that is plainly meant as an address but is not valid,
 * and null for something that is not an address at all (a hostname pattern).
 */
export function parseRange(text: string): IpRange | string | null {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const addr = parseIp(addrText);
  if (!addr) {
    if (slash >= 0)
      return `'${addrText}' is not a valid IP address (CIDR rules need a strict IPv4 or IPv6 address)`;
    return null;
  }
  // The family of the text, not of the unmapped address: '::ffff:10.0.0.0/104' is an IPv6 prefix length.
  const textFamily: Family = isIPv4(addrText) ? 4 : 6;
  let prefix = BITS[textFamily];
  if (slash >= 0) {
    const p = text.slice(slash + 1);
    if (/^\d{1,3}$/.test(p)) prefix = Number(p);
    else if (textFamily === 4 && parseIPv4(p) !== null) {
      const fromMask = maskToPrefix(parseIPv4(p)!);
      if (fromMask === null) return `netmask '${p}' is not contiguous`;
      prefix = fromMask;
    } else return `prefix length '${p}' is not a number`;
    if (prefix > BITS[textFamily])
      return `prefix length /${prefix} is too long for IPv${textFamily} (max /${BITS[textFamily]})`;
  }
  let family: Family = textFamily;
  if (textFamily === 6 && addr.family === 4) {
    // A mapped IPv6 rule: it covers IPv4 addresses only when the prefix reaches into the mapped block.
    if (prefix < 96)
      return `'${text}': an IPv4-embedding prefix shorter than /96 mixes families; write an IPv4 rule`;
    prefix -= 96;
    family = 4;
  }
  const bits = BigInt(BITS[family] - prefix);
  return { family, base: (addr.value >> bits) << bits, prefix };
}

export function inRange(a: IpAddr, r: IpRange): boolean {
  if (a.family !== r.family) return false;
  const bits = BigInt(BITS[r.family] - r.prefix);
  return a.value >> bits === r.base >> bits;
}

/** Range a lies entirely within range b. */
export function rangeWithin(a: IpRange, b: IpRange): boolean {
  return a.family === b.family && a.prefix >= b.prefix && inRange({ family: a.family, value: a.base }, b);
}

/**
 * Addresses that reach the relay's own machine: loopback, and the unspecified address (connecting to
 * 0.0.0.0 or :: reaches loopback on Linux). Only a rule naming such a range reaches them.
 */
export const LOCAL_RANGES: readonly IpRange[] = [
  { family: 4, base: 127n << 24n, prefix: 8 },
  { family: 4, base: 0n, prefix: 8 },
  { family: 6, base: 1n, prefix: 128 },
  { family: 6, base: 0n, prefix: 128 },
];

export function isLocal(a: IpAddr): boolean {
  return LOCAL_RANGES.some((r) => inRange(a, r));
}
