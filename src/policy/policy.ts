// Egress policy: Enclaver's rule syntax (names, `*`, `**`, IPs, CIDRs; allow/deny; deny wins; default deny)
// plus optional ports, without odyn's bypasses (docs/reference/enclaver.md, "Policy holes in odyn that
// cloister closes"). Hosts are normalised before matching: lowercase, one trailing dot, IDN -> punycode,
// numeric IPv4 spellings read as the address they mean, mapped IPv6 folded into IPv4. The normalised host is
// what gets dialled.
import { domainToASCII } from 'node:url';
import { PolicyError } from '../errors.ts';
import {
  formatIp,
  formatRange,
  type IpAddr,
  type IpRange,
  inRange,
  isLocal,
  LOCAL_RANGES,
  parseIp,
  parseRange,
  rangeWithin,
} from './address.ts';

export type RuleError = PolicyError['errors'][number];

export { PolicyError };

export interface Decision {
  allowed: boolean;
  /** The rule that decided, as written in the manifest, or null for the default deny. */
  rule: string | null;
  reason: string;
  /** Where the deciding rule sits (absent for the default deny and invalid targets). */
  list?: 'allow' | 'deny';
  index?: number;
  /** The normalised host that was judged and must be dialled (absent if the host is invalid). */
  target?: string;
}

export interface Policy {
  check(host: string, port: number): Decision;
  /**
   * IP ranges a name allowed by `decision` must not resolve to (P4, checked by the relay after DNS):
   * the IP deny rules that apply to `port`, plus loopback/unspecified when a wildcard let the name in.
   */
  resolvedDenyRanges(decision: Decision, port: number): readonly string[];
  /**
   * Every port some rule names, plus one that none names: a decision depends on the port only through
   * these, so checking a host on each says whether some port is allowed for it (the DNS stub's question).
   */
  readonly distinctPorts: readonly number[];
}

interface Rule {
  list: 'allow' | 'deny';
  index: number;
  text: string;
  /** null: any port. */
  port: number | null;
  range?: IpRange;
  /** Range lies within loopback/unspecified: a rule that names the local machine on purpose. */
  local?: boolean;
  /** Name pattern labels, rightmost first; '*' one label; '**' (only last here) one or more. */
  labels?: string[];
  wildcard?: boolean;
}

/** Names that mean the relay's own machine: reachable only through a rule that names them. */
function isSpecialName(name: string): boolean {
  return name === 'host' || name === 'localhost' || name.endsWith('.localhost');
}

const LABEL = /^[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?$/;
/** ASCII that can never be part of a hostname (non-ASCII goes on to IDN processing). */
function hasForbidden(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80 && !/[A-Za-z0-9._-]/.test(s[i]!)) return true;
  }
  return false;
}

export type HostTarget = { kind: 'ip'; addr: IpAddr; text: string } | { kind: 'name'; name: string };

/**
 * Normalises a host as received from a client (CONNECT authority or absolute URL, brackets allowed).
 * Returns the target or an error saying why it is not a host.
 */
export function normalizeHost(raw: string): HostTarget | { error: string } {
  if (raw.length === 0) return { error: 'empty host' };
  if (raw.length > 1024) return { error: 'host is too long' };
  if (raw.startsWith('[') || raw.includes(':')) {
    const addr = parseIp(raw);
    if (!addr || raw.startsWith('[') !== raw.endsWith(']')) return { error: 'not a valid IPv6 address' };
    return { kind: 'ip', addr, text: formatIp(addr) };
  }
  if (hasForbidden(raw)) return { error: 'contains characters that cannot be in a hostname' };
  const undotted = raw.endsWith('.') ? raw.slice(0, -1) : raw;
  // WHATWG host parsing: IDN to punycode, lowercase, and IPv4 in any spelling (2852039166, 0x7f.1,
  // 127.1, 0177.0.0.1) turned into the dotted quad a resolver would read it as.
  const ascii = domainToASCII(undotted);
  if (ascii === '') return { error: 'not a valid hostname (IDN processing failed or a malformed number)' };
  const addr = parseIp(ascii);
  if (addr) return { kind: 'ip', addr, text: formatIp(addr) };
  if (ascii.length > 253) return { error: 'hostname is longer than 253 characters' };
  for (const label of ascii.split('.')) {
    if (label === '') return { error: 'empty label' };
    if (!LABEL.test(label)) return { error: `label '${label}' is not a valid hostname label` };
  }
  // A name whose last label is all digits would be read as an address by some resolvers.
  if (/^\d+$/.test(ascii.slice(ascii.lastIndexOf('.') + 1)))
    return { error: 'looks like a malformed IPv4 address' };
  return { kind: 'name', name: ascii };
}

function parsePort(text: string): number | string {
  if (!/^\d{1,5}$/.test(text)) return `port '${text}' is not a number`;
  const n = Number(text);
  if (n < 1 || n > 65535) return `port ${n} is out of range (1-65535)`;
  return n;
}

function compileRule(list: 'allow' | 'deny', index: number, written: unknown): Rule | string {
  if (typeof written !== 'string') return 'a rule must be a string';
  const text = written.trim();
  if (text === '') return 'empty rule';
  let hostPart = text;
  let port: number | null = null;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return "missing ']' after an IPv6 address";
    hostPart = text.slice(1, close);
    const after = text.slice(close + 1);
    if (after !== '') {
      if (!after.startsWith(':')) return `unexpected '${after}' after ']'`;
      const p = parsePort(after.slice(1));
      if (typeof p === 'string') return p;
      port = p;
    }
    const r = parseRange(hostPart);
    if (r === null || typeof r === 'string' || hostPart.split('/')[0]!.indexOf(':') < 0)
      return typeof r === 'string' ? r : `'${hostPart}' inside brackets is not an IPv6 address or CIDR`;
  } else {
    const colons = text.split(':').length - 1;
    if (colons === 1) {
      const at = text.indexOf(':');
      hostPart = text.slice(0, at);
      const p = parsePort(text.slice(at + 1));
      if (typeof p === 'string') return p;
      port = p;
    }
    // Two or more colons: a bare IPv6 address or CIDR (Enclaver's form); IPv6 with a port needs brackets.
  }
  const range = parseRange(hostPart);
  if (typeof range === 'string') return range;
  if (range) {
    return {
      list,
      index,
      text: written,
      port,
      range,
      local: LOCAL_RANGES.some((l) => rangeWithin(range, l)),
    };
  }
  if (hostPart.includes(':')) return `'${hostPart}' is not a valid IPv6 address or CIDR`;
  return compileNamePattern(list, index, written, hostPart, port);
}

function compileNamePattern(
  list: 'allow' | 'deny',
  index: number,
  written: string,
  pattern: string,
  port: number | null,
): Rule | string {
  if (hasForbidden(pattern.replaceAll('*', ''))) return 'contains characters that cannot be in a hostname';
  const undotted = pattern.endsWith('.') ? pattern.slice(0, -1) : pattern;
  const raw = undotted.split('.');
  const labels: string[] = [];
  for (const [i, label] of raw.entries()) {
    if (label === '') return 'empty label (two dots in a row, or a leading dot)';
    if (label === '**') {
      if (i !== 0) return "'**' may only be the leftmost label (it matches one or more labels)";
      labels.push('**');
    } else if (label === '*') labels.push('*');
    else if (label.includes('*')) return `'${label}': '*' must be a whole label`;
    else labels.push(label);
  }
  // IDN and case for the literal labels, all at once so a number-only rule is seen as the address it is.
  const literal = labels.map((l) => (l.includes('*') ? 'x' : l)).join('.');
  const ascii = domainToASCII(literal);
  if (ascii === '') return 'not a valid hostname pattern';
  if (parseIp(ascii) && !labels.some((l) => l.includes('*')))
    return `an IPv4 address in a non-standard form (it means ${ascii}); write ${ascii}`;
  const asciiLabels = ascii.split('.');
  if (asciiLabels.length !== labels.length) return 'not a valid hostname pattern';
  const out = labels.map((l, i) => (l.includes('*') ? l : asciiLabels[i]!));
  for (const l of out)
    if (!l.includes('*') && !LABEL.test(l)) return `label '${l}' is not a valid hostname label`;
  if (/^\d+$/.test(out[out.length - 1]!)) return 'the last label is a number (it would read as an address)';
  return {
    list,
    index,
    text: written,
    port,
    labels: out.reverse(),
    wildcard: out.some((l) => l.includes('*')),
  };
}

function matchName(labels: readonly string[], host: readonly string[]): boolean {
  for (let i = 0; i < labels.length; i++) {
    const p = labels[i]!;
    if (p === '**') return host.length > i; // leftmost only: one or more labels remain
    if (i >= host.length) return false;
    if (p !== '*' && p !== host[i]) return false;
  }
  return host.length === labels.length;
}

function ruleMatches(rule: Rule, target: HostTarget, hostLabels: string[] | null, port: number): boolean {
  if (rule.port !== null && rule.port !== port) return false;
  if (target.kind === 'ip') {
    if (!rule.range || !inRange(target.addr, rule.range)) return false;
    // An allow rule reaches the relay's loopback only if it names a loopback range itself.
    return rule.list === 'deny' || !isLocal(target.addr) || rule.local === true;
  }
  if (!rule.labels) return false;
  if (rule.wildcard && rule.list === 'allow' && isSpecialName(target.name)) return false;
  return matchName(rule.labels, hostLabels!);
}

function where(r: Rule): string {
  return `'${r.text}' (egress.${r.list}[${r.index}])`;
}

/** Compiles allow/deny rules; throws PolicyError naming every invalid rule. */
export function compilePolicy(allow: readonly string[], deny: readonly string[]): Policy {
  const errors: RuleError[] = [];
  const allowRules: Rule[] = [];
  const denyRules: Rule[] = [];
  for (const [list, rules, out] of [
    ['allow', allow, allowRules],
    ['deny', deny, denyRules],
  ] as const) {
    for (const [index, text] of (rules ?? []).entries()) {
      const r = compileRule(list, index, text);
      if (typeof r === 'string') errors.push({ list, index, message: `'${String(text)}': ${r}` });
      else out.push(r);
    }
  }
  if (errors.length) throw new PolicyError(errors);
  // Exact rules decide before wildcards, so the rule reported (and the P4 guard) is the most specific.
  allowRules.sort((a, b) => Number(a.wildcard === true) - Number(b.wildcard === true));

  function check(host: string, port: number): Decision {
    const hostPort = `${host}:${port}`;
    if (!Number.isInteger(port) || port < 1 || port > 65535)
      return { allowed: false, rule: null, reason: `port ${port} is out of range (1-65535)` };
    const target = normalizeHost(host);
    if ('error' in target)
      return { allowed: false, rule: null, reason: `invalid host '${host}': ${target.error}` };
    const name = target.kind === 'ip' ? target.text : target.name;
    const labels = target.kind === 'name' ? target.name.split('.').reverse() : null;
    // Deny wins: the first matching deny rule decides, then the first matching allow rule.
    const decided = (r: Rule, allowed: boolean): Decision => ({
      allowed,
      rule: r.text,
      list: allowed ? 'allow' : 'deny',
      index: r.index,
      target: name,
      reason: `${name}:${port} is ${allowed ? 'allowed' : 'denied'} by rule ${where(r)}`,
    });
    const denied = denyRules.find((r) => ruleMatches(r, target, labels, port));
    if (denied) return decided(denied, false);
    const allowedBy = allowRules.find((r) => ruleMatches(r, target, labels, port));
    if (allowedBy) return decided(allowedBy, true);
    const shown = name === host ? hostPort : `${hostPort} (${name})`;
    return { allowed: false, rule: null, target: name, reason: `${shown} is not in the egress policy` };
  }

  // What the relay gets as deny_ips, prepared here once rather than per tunnel: the deny rules' ranges
  // as text (in rule order), and the local ranges added when a wildcard name rule let the target in.
  const denyRanges = denyRules
    .filter((r) => r.range)
    .map((r) => ({ port: r.port, text: formatRange(r.range!) }));
  const localRanges = LOCAL_RANGES.map(formatRange);
  const portless = denyRanges.every((r) => r.port === null);
  const plain = Object.freeze(denyRanges.map((r) => r.text));
  const withLocal = Object.freeze([...plain, ...localRanges]);
  const wildcardAllow = new Set(allowRules.filter((r) => r.labels && r.wildcard).map((r) => r.index));

  function resolvedDenyRanges(decision: Decision, port: number): readonly string[] {
    const local = decision.list === 'allow' && wildcardAllow.has(decision.index!);
    if (portless) return local ? withLocal : plain;
    const out = denyRanges.filter((r) => r.port === null || r.port === port).map((r) => r.text);
    return local ? [...out, ...localRanges] : out;
  }

  const named = new Set([...allowRules, ...denyRules].flatMap((r) => (r.port === null ? [] : [r.port])));
  let unnamed = 1;
  while (named.has(unnamed)) unnamed++;
  const distinctPorts = Object.freeze([...named, unnamed].sort((a, b) => a - b));

  return { check, resolvedDenyRanges, distinctPorts };
}
