// Transparent egress (cloister.yaml `transparent.enabled`, docs/transparent-egress.md): the app's
// outgoing TCP and DNS reach cloister without proxy variables, and get the same policy as CONNECT.
//
//   app connect(10.1.2.3:443) --route default dev lo--> nat OUTPUT REDIRECT --> listener 127.0.0.1:<ephemeral>
//       SO_ORIGINAL_DST -> judge (IP rules, else names the DNS stub bound to that IP) -> proxy's openUpstream
//       -> relay -> 10.1.2.3:443; refused connections are reset
//   app DNS (any server, UDP or TCP 53) --REDIRECT--> stub 127.0.0.1:53 (dns-stub.ts)
//   app other UDP --REDIRECT--> a sink that counts and drops it
//   IPv6: not redirected and no route: connect() fails at once (ENETUNREACH); AAAA answers are empty
//
// The proxy (proxy.ts) starts this with its gateway: decisions, tunnel slots and tunnels are shared, so
// max_tunnels, logging and metrics cover both kinds of connection.

import { createSocket } from 'node:dgram';
import { readFileSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import type { Settings } from '../config/types.ts';
import type { ConnectionSet } from '../connections.ts';
import { withDeadline } from '../deadline.ts';
import { toCloisterError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import { udpDropped } from '../metrics.ts';
import { loadNative } from '../native.ts';
import type { TransparentPlan } from '../plan/index.ts';
import type { Decision, Policy } from '../policy/policy.ts';
import { bringUpLoopback } from '../system/index.ts';
import { installNatRules, removeNatRules, transparentRules } from '../system/netfilter.ts';
import { pointResolvConfAtStub, type ResolvConfOptions } from '../system/resolv-conf.ts';
import { addDefaultRouteViaLoopback, removeDefaultRouteViaLoopback } from '../system/route.ts';
import { handleFd } from '../transport/node-internals.ts';
import { type DnsResolver, dohResolver, relayResolver } from './dns-resolvers.ts';
import { createDnsAnswerer, startDnsStub } from './dns-stub.ts';
import { claimedName } from './first-bytes-name.ts';
import { NameBindings } from './name-bindings.ts';

/** What the egress proxy shares with the transparent listener. */
export interface EgressGateway {
  policy: Policy;
  /** The proxy's memoised policy decision (not yet counted or logged). */
  check(host: string, port: number): Decision;
  /** Counts and logs a decision as the proxy does for CONNECT. */
  record(d: Decision, fields: Record<string, unknown>): Decision;
  /** Takes a tunnel slot and asks the relay to dial; rejects with a CloisterError. */
  openUpstream(target: string, port: number, decision: Decision): Promise<Socket>;
  /** Joins the app's socket and the upstream (tunnel engine, idle timeout, metrics). */
  track(client: Socket, upstream: Socket): void;
  /** The proxy's live connections: a redirected connection is held there from its accept. */
  connections: ConnectionSet;
  /** A fresh vsock stream to the host relay (resolve requests). */
  connectRelay(): Promise<Socket>;
  logger: Logger;
  settings: Settings['egress'];
  /** Writes a file in the RAM directory (for a read-only /etc/resolv.conf); absent: no fallback. */
  ramFile?: (name: string, content: string) => Promise<string>;
}

/** The kernel side, replaceable in tests that cannot change the network. */
export interface TransparentSystem {
  originalDestination(fd: number): { address: string; port: number };
  /** Route, nat rules and resolv.conf; resolves with what undoes them. */
  redirect(
    ports: { tcp: number; dns: number; udpSink: number },
    resolvConf: ResolvConfOptions,
  ): Promise<() => void>;
  /** Port of the DNS stub (53; tests use 0). */
  dnsPort: number;
}

export const kernelSystem: TransparentSystem = {
  originalDestination: (fd) => loadNative().originalDestination(fd),
  dnsPort: 53,
  async redirect(ports, resolvConf) {
    bringUpLoopback();
    addDefaultRouteViaLoopback();
    const undo: (() => void)[] = [() => removeDefaultRouteViaLoopback()];
    // Each step on its own: one failing must not leave the others in place.
    const undoAll = () => {
      for (const u of undo.reverse()) {
        try {
          u();
        } catch {
          // The rest still runs; a leftover is visible in `ip route` / the nat table.
        }
      }
    };
    try {
      installNatRules(transparentRules(ports));
      undo.push(removeNatRules);
      undo.push(await pointResolvConfAtStub(resolvConf));
    } catch (e) {
      undoAll();
      throw e;
    }
    return undoAll;
  },
};

export interface TransparentVerdict {
  decision: Decision;
  /** The name the address was bound to whose rule decided (null: an IP rule decided, or nothing did). */
  boundTo: string | null;
}

/**
 * Judges a redirected connection to address:port. An IP rule decides first (a deny rule for the address
 * wins over any name); else the names the DNS stub returned this address for, each checked with this
 * port, so an address opens only its own names' ports; else the default deny.
 */
export function judgeTransparent(
  check: (host: string, port: number) => Decision,
  bindings: NameBindings,
  address: string,
  port: number,
): TransparentVerdict {
  const byIp = check(address, port);
  if (byIp.allowed || byIp.list === 'deny') return { decision: byIp, boundTo: null };
  const names = bindings.namesFor(address);
  let denied: Decision | null = null;
  for (const name of names) {
    const d = check(name, port);
    if (d.allowed)
      return {
        decision: { ...d, target: address, reason: `${address}:${port} (resolved for ${name}): ${d.reason}` },
        boundTo: name,
      };
    if (d.list === 'deny' && !denied) denied = d;
  }
  if (names.length === 0) return { decision: byIp, boundTo: null };
  return {
    decision: {
      allowed: false,
      rule: denied?.rule ?? null,
      ...(denied ? { list: denied.list, index: denied.index } : {}),
      target: address,
      reason: `${address}:${port} was resolved for ${names.join(', ')}, ${
        denied ? `denied by rule '${denied.rule}'` : `whose rules do not allow port ${port}`
      }`,
    },
    boundTo: null,
  };
}

/** How long a name-allowed connection may take to send its first bytes when `check_sni` is on. */
const FIRST_BYTES_WAIT_MS = 1000;

/**
 * The first bytes the client sends, read and put back (unshift) for the tunnel; null if none come within
 * `ms` (a protocol where the server speaks first: nothing to check) or the client goes away.
 */
function firstBytes(client: Socket, ms: number): Promise<Buffer | null> {
  let done!: (b: Buffer | null) => void;
  const reading = new Promise<Buffer | null>((resolve) => {
    done = (b) => {
      client.off('data', onData);
      client.off('close', onClose);
      client.pause();
      if (b) client.unshift(b);
      resolve(b);
    };
    const onData = (b: Buffer) => done(b);
    const onClose = () => done(null);
    client.on('data', onData);
    client.once('close', onClose);
    client.resume();
  });
  // Quiet for `ms`: nothing to check (a server-speaks-first protocol).
  return withDeadline(reading, ms, () => {
    done(null);
    return new Error('no first bytes');
  }).catch(() => null);
}

function listen(server: Server): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      server.off('error', reject);
      resolve((server.address() as { port: number }).port);
    });
  });
}

export async function startTransparent(
  plan: TransparentPlan,
  gw: EgressGateway,
  system: TransparentSystem = kernelSystem,
): Promise<{ close(): Promise<void>; ports: { tcp: number; dns: number; udpSink: number } }> {
  const log = gw.logger.child({ component: 'transparent-egress' });
  const bindings = new NameBindings();
  const timeoutMs = gw.settings.connect_timeout_ms;
  const resolver: DnsResolver =
    plan.resolver.kind === 'relay'
      ? relayResolver(gw.connectRelay, timeoutMs)
      : dohResolver(
          {
            url: plan.resolver.url,
            host: plan.resolver.host,
            port: plan.resolver.port,
            ca: plan.resolver.caFile === null ? null : readFileSync(plan.resolver.caFile, 'utf8'),
          },
          (host, port) => gw.openUpstream(host, port, gw.check(host, port)),
          timeoutMs,
        );
  const undo: (() => Promise<void> | void)[] = [() => resolver.close()];
  const closeAll = async () => {
    for (const u of undo.reverse()) {
      try {
        await u();
      } catch (e) {
        log.error({ err: e }, 'transparent egress: a clean-up step failed');
      }
    }
    undo.length = 0;
  };
  try {
    const stub = await startDnsStub(
      createDnsAnswerer({ policy: gw.policy, resolve: (n) => resolver.resolve4(n), bindings, logger: log }),
      { port: system.dnsPort, logger: log },
    );
    undo.push(() => stub.close());

    const server = createServer({ allowHalfOpen: true, pauseOnConnect: true }, (client) => {
      void onConnection(client);
    });
    const tcp = await listen(server);
    undo.push(() => new Promise<void>((r) => server.close(() => r())));

    // Other UDP: counted and dropped here (the nat rule sends it; nothing leaves the enclave).
    const sink = createSocket('udp4');
    let lastLog = 0;
    sink.on('message', (_msg, rinfo) => {
      udpDropped.inc();
      const now = Date.now();
      if (now - lastLog > 10_000) {
        lastLog = now;
        log.warn(
          { from: rinfo.port },
          'transparent egress: dropped UDP that is not DNS (counted in cloister_egress_udp_dropped_total)',
        );
      }
    });
    await new Promise<void>((resolve, reject) => {
      sink.once('error', reject);
      sink.bind(0, '127.0.0.1', () => resolve());
    });
    undo.push(() => void sink.close());
    const ports = { tcp, dns: stub.port, udpSink: sink.address().port };

    undo.push(await system.redirect(ports, { ramFile: gw.ramFile }));
    log.info({ ...ports, resolver: plan.resolver.kind }, 'transparent egress on');
    return { close: closeAll, ports };
  } catch (e) {
    await closeAll();
    throw e;
  }

  /** A claimed name is fine if this address was returned for it and its rules allow this port. */
  function claimAllowed(claimed: string, address: string, port: number): boolean {
    return bindings.namesFor(address).includes(claimed) && gw.check(claimed, port).allowed;
  }

  async function onConnection(client: Socket): Promise<void> {
    client.on('error', () => client.destroy());
    gw.connections.add(client);
    let dest: { address: string; port: number };
    try {
      dest = system.originalDestination(handleFd(client) ?? -1);
    } catch (e) {
      log.info({ err: e }, 'transparent egress: a connection without an original destination was closed');
      return void client.destroy();
    }
    // Dialled directly rather than redirected: nothing to forward to.
    if (dest.address.startsWith('127.')) return void client.destroy();
    let { decision, boundTo } = judgeTransparent(gw.check, bindings, dest.address, dest.port);
    // Allowed through a name: optionally, the name the connection itself gives must be one of those.
    if (decision.allowed && boundTo !== null && plan.checkSni) {
      const first = await firstBytes(client, FIRST_BYTES_WAIT_MS);
      const claimed = first === null ? null : claimedName(first);
      if (claimed !== null && !claimAllowed(claimed, dest.address, dest.port)) {
        decision = {
          allowed: false,
          rule: null,
          target: dest.address,
          reason: `${dest.address}:${dest.port} (resolved for ${boundTo}) names '${claimed}' in its TLS SNI or HTTP Host, which the DNS stub did not return this address for`,
        };
        boundTo = null;
      }
    }
    gw.record(decision, {
      host: dest.address,
      port: dest.port,
      mode: 'transparent',
      ...(boundTo ? { name: boundTo } : {}),
    });
    if (!decision.allowed) return void client.resetAndDestroy();
    try {
      const upstream = await gw.openUpstream(dest.address, dest.port, decision);
      if (client.destroyed) return void upstream.destroy();
      gw.track(client, upstream);
    } catch (e) {
      const err = toCloisterError(e);
      log.warn(
        { host: dest.address, port: dest.port, code: err.code, err: err.message },
        'transparent connection failed',
      );
      client.resetAndDestroy();
    }
  }
}
