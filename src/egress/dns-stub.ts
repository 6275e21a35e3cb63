// Transparent egress's DNS stub on 127.0.0.1:53, UDP and TCP (docs/transparent-egress.md). The app's
// resolver is pointed at it (/etc/resolv.conf) and the nat rules send any DNS the app addresses
// elsewhere to it too. It enforces names as the egress proxy enforces hosts:
//
//   a name no port of the policy allows     REFUSED (logged at warn with the deciding rule, as egress denials,
//                                           once a minute per name)
//   an allowed name, type A                 the resolver's IPv4 answer, minus addresses the policy denies
//                                           for it; each address is bound to the name (name-bindings.ts)
//   an allowed name, any other type         NOERROR with no data (AAAA included: IPv6 is refused)
//   the resolver fails                      SERVFAIL (CLO_ERR_DNS_RESOLVE in the log)
//   not a standard query with one question  FORMERR / NOTIMP; a message that is not DNS is dropped
//
// REFUSED rather than NXDOMAIN: the name may well exist; REFUSED says this server will not answer it,
// is not cached as "no such name", and every stub resolver reports it at once.
// Wire format by dns-packet (docs/decisions.md).
import { createSocket, type Socket as UdpSocket } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import dnsPacket from 'dns-packet';
import { ConnectionSet, closeServer } from '../connections.ts';
import { DnsResolveError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { dnsQueries } from '../metrics.ts';
import { type IpRange, inRange, LOCAL_RANGES, parseIp, parseRange } from '../policy/address.ts';
import { type Decision, normalizeHost, type Policy } from '../policy/policy.ts';
import { type Service, serviceLifetime } from '../service.ts';
import type { Resolved } from './dns-resolvers.ts';
import type { NameBindings } from './name-bindings.ts';

/** Longest TTL given to the app (a binding lives as long, plus its grace). */
export const MAX_ANSWER_TTL_S = 300;
/** Addresses in one UDP answer: 16 A records and the question stay well under 512 bytes. */
const MAX_UDP_ANSWERS = 16;
/** Names whose resolver answers are kept (until their TTL ends). */
const CACHE_MAX = 1024;
/** Resolutions in flight at once; more queries get SERVFAIL. */
const MAX_PENDING = 256;
/** How often one refused name is logged again. */
const REFUSAL_LOG_INTERVAL_MS = 60_000;
/** Answers a TCP client may leave unread before it is cut off. */
const MAX_TCP_UNREAD = 1024 * 1024;
/** A TCP DNS connection idle this long is closed (RFC 7766 suggests seconds). */
const TCP_IDLE_MS = 10_000;

const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
type Rcode = keyof typeof RCODE;

export interface NameVerdict {
  allowed: boolean;
  /** The decision to report: the first allowing one, else a denying one (a deny rule if any matched). */
  decision: Decision;
  /** Ranges the name's addresses must not fall in, for every port it is allowed on (P4). */
  denyRanges: IpRange[];
}

/** Whether some port of the policy allows `name`, and which addresses it may not resolve to. */
export function judgeName(policy: Policy, name: string): NameVerdict {
  let allowing: Decision | undefined;
  let denying: Decision | undefined;
  let ranges = null as Set<string> | null;
  for (const port of policy.distinctPorts) {
    const d = policy.check(name, port);
    if (d.allowed) {
      allowing ??= d;
      // An address stays out only if every allowed port denies it: intersect the ranges.
      const here = new Set(policy.resolvedDenyRanges(d, port));
      ranges = ranges === null ? here : new Set([...ranges].filter((r) => here.has(r)));
    } else if (!denying || (denying.list !== 'deny' && d.list === 'deny')) denying = d;
  }
  const denyRanges = [...(ranges ?? [])].flatMap((text) => {
    const r = parseRange(text);
    return r && typeof r !== 'string' ? [r] : [];
  });
  // Loopback and unspecified answers never: the rules do not redirect them, so they would reach the
  // enclave's own services under an outside name (DNS rebinding).
  denyRanges.push(...LOCAL_RANGES);
  return { allowed: allowing !== undefined, decision: allowing ?? denying!, denyRanges };
}

export interface DnsStubOptions {
  policy: Policy;
  resolve(name: string): Promise<Resolved>;
  bindings: NameBindings;
  logger: Logger;
  now?: () => number;
}

/** The stub's logic: one query message in, one answer message out (null: drop it). */
export function createDnsAnswerer(
  opts: DnsStubOptions,
): (query: Buffer, udp: boolean) => Promise<Buffer | null> {
  const log = opts.logger;
  const now = opts.now ?? Date.now;
  const cache = new Map<string, { at: number; answer: Promise<Resolved> }>();
  let pending = 0;
  // A refused name is logged once a minute: resolvers retry and ask A and AAAA, and an app looping on a
  // denied name must not push its own lines out of the log ring (the metric counts every refusal).
  const lastLogged = new Map<string, number>();
  function shouldLog(name: string): boolean {
    const t = now();
    const last = lastLogged.get(name);
    if (last !== undefined && t - last < REFUSAL_LOG_INTERVAL_MS) return false;
    if (lastLogged.size >= CACHE_MAX) lastLogged.clear();
    lastLogged.set(name, t);
    return true;
  }

  function lookup(name: string): Promise<Resolved> {
    const hit = cache.get(name);
    if (hit) {
      const age = (now() - hit.at) / 1000;
      // A settled answer is good for its TTL; one still in flight is shared by every asker.
      const fresh = hit.answer.then((r) => (age < r.ttl ? r : null));
      return fresh.then(
        (r) => r ?? refresh(name),
        () => refresh(name),
      );
    }
    return refresh(name);
  }

  function refresh(name: string): Promise<Resolved> {
    if (pending >= MAX_PENDING)
      return Promise.reject(new DnsResolveError(`${MAX_PENDING} DNS resolutions already in flight`));
    pending++;
    const answer = opts.resolve(name).finally(() => pending--);
    if (cache.size >= CACHE_MAX) cache.delete(cache.keys().next().value!);
    cache.delete(name);
    cache.set(name, { at: now(), answer });
    answer.catch(() => cache.delete(name));
    return answer;
  }

  function reply(q: dnsPacket.Packet, rcode: Rcode, answers: dnsPacket.Answer[] = []): Buffer {
    dnsQueries.inc({
      answer: rcode === 'NOERROR' ? (answers.length > 0 ? 'allowed' : 'empty') : rcode.toLowerCase(),
    });
    return dnsPacket.encode({
      type: 'response',
      id: q.id ?? 0,
      flags: ((q.flags ?? 0) & dnsPacket.RECURSION_DESIRED) | dnsPacket.RECURSION_AVAILABLE | RCODE[rcode],
      questions: q.questions ?? [],
      answers,
    });
  }

  return async (message, udp) => {
    let q: dnsPacket.Packet;
    try {
      q = dnsPacket.decode(message);
    } catch {
      // Not DNS at all: an answer needs at least the id, which a 12-byte header gives.
      if (message.length < 12) return null;
      dnsQueries.inc({ answer: 'formerr' });
      return header(message.readUInt16BE(0), RCODE.FORMERR);
    }
    if (q.type !== 'query') return null;
    const opcode = (q as { opcode?: string }).opcode;
    if (opcode !== 'QUERY') return reply({ ...q, questions: [] }, 'NOTIMP');
    if (q.questions?.length !== 1) return reply({ ...q, questions: [] }, 'FORMERR');
    const question = q.questions[0]!;
    const asked = question.name;
    const target = normalizeHost(asked);
    if ('error' in target || target.kind !== 'name') {
      log.warn(
        { name: asked.slice(0, 255), verdict: 'deny', rule: null },
        `dns refused: '${asked.slice(0, 255)}' is not a host name`,
      );
      return reply(q, 'REFUSED');
    }
    const name = target.name;
    const verdict = judgeName(opts.policy, name);
    if (!verdict.allowed) {
      const d = verdict.decision;
      if (shouldLog(name))
        log.warn({ name, type: question.type, verdict: 'deny', rule: d.rule }, `dns refused: ${d.reason}`);
      return reply(q, 'REFUSED');
    }
    if (question.type !== 'A') return reply(q, 'NOERROR');
    let resolved: Resolved;
    try {
      resolved = await lookup(name);
    } catch (e) {
      log.warn({ name, err: e }, `dns: ${(e as Error).message}`);
      return reply(q, 'SERVFAIL');
    }
    if (resolved.nxdomain) return reply(q, 'NXDOMAIN');
    const kept: string[] = [];
    const dropped: string[] = [];
    for (const text of resolved.addresses) {
      const ip = parseIp(text);
      if (ip && ip.family === 4 && !verdict.denyRanges.some((r) => inRange(ip, r))) kept.push(text);
      else dropped.push(text);
    }
    if (dropped.length > 0)
      log.warn(
        { name, dropped, rule: verdict.decision.rule },
        `dns: dropped answers for ${name} the policy denies`,
      );
    const ttl = Math.min(resolved.ttl, MAX_ANSWER_TTL_S);
    const answers = udp ? kept.slice(0, MAX_UDP_ANSWERS) : kept;
    opts.bindings.bind(name, answers, ttl);
    log.debug(
      { name, addresses: answers, ttl, rule: verdict.decision.rule },
      `dns allowed: ${verdict.decision.reason}`,
    );
    return reply(
      q,
      'NOERROR',
      answers.map((data) => ({ type: 'A', name: asked, ttl, class: 'IN', data })),
    );
  };
}

/** A bare header answer (FORMERR for a message dns-packet cannot read). */
function header(id: number, rcode: number): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt16BE(id, 0);
  b.writeUInt16BE(0x8000 | dnsPacket.RECURSION_AVAILABLE | rcode, 2);
  return b;
}

/** close() cuts TCP connections off at once (a query in flight is retried by the resolver). */
export interface DnsStub extends Service {
  port: number;
}

/** Serves `answer` on host:port over UDP and TCP (port 0: one free port for both, tests). */
export async function startDnsStub(
  answer: (query: Buffer, udp: boolean) => Promise<Buffer | null>,
  opts: { host?: string; port?: number; logger: Logger },
): Promise<DnsStub> {
  const host = opts.host ?? '127.0.0.1';
  const open = new ConnectionSet();
  const tcp: Server = createServer({ allowHalfOpen: false }, (sock) => {
    open.add(sock);
    serveTcp(sock, answer);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(opts.port ?? 53, host, () => resolve());
  });
  const port = (tcp.address() as { port: number }).port;
  const udp: UdpSocket = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    udp.once('error', reject);
    udp.bind(port, host, () => resolve());
  }).catch((e) => {
    tcp.close();
    throw e;
  });
  udp.on('error', (e) => opts.logger.warn({ err: e }, 'dns stub: UDP socket error'));
  tcp.on('error', (e) => opts.logger.warn({ err: e }, 'dns stub: TCP server error'));
  udp.on('message', (msg, rinfo) => {
    answer(msg, true).then(
      (out) => {
        if (out) udp.send(out, rinfo.port, rinfo.address);
      },
      (e) => opts.logger.error({ err: e }, 'dns stub: a query failed'),
    );
  });
  const lifetime = serviceLifetime({
    stopAccepting: () => {
      udp.close();
      return closeServer(tcp);
    },
    connections: open,
    graceMs: 0,
  });
  return { port, close: lifetime.close, destroy: lifetime.destroy };
}

/** RFC 1035 §4.2.2 framing: a 2-byte length before each message; several queries per connection. */
function serveTcp(sock: Socket, answer: (query: Buffer, udp: boolean) => Promise<Buffer | null>): void {
  sock.setTimeout(TCP_IDLE_MS, () => sock.destroy());
  sock.on('error', () => sock.destroy());
  let buf: Buffer = Buffer.alloc(0);
  sock.on('data', (chunk: Buffer) => {
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    while (buf.length >= 2) {
      const len = buf.readUInt16BE(0);
      if (buf.length < 2 + len) break;
      const msg = buf.subarray(2, 2 + len);
      buf = buf.subarray(2 + len);
      answer(msg, false).then(
        (out) => {
          if (!out || sock.destroyed) return;
          // A client that pipelines queries and never reads its answers is cut off, not buffered for.
          if (sock.writableLength > MAX_TCP_UNREAD) return void sock.destroy();
          const framed = Buffer.allocUnsafe(2 + out.length);
          framed.writeUInt16BE(out.length, 0);
          out.copy(framed, 2);
          sock.write(framed);
        },
        () => sock.destroy(),
      );
    }
  });
}
