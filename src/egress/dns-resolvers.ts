// Who answers the DNS stub (dns-stub.ts) about names the policy allows (cloister.yaml
// `transparent.resolver`, trust models in docs/transparent-egress.md):
//
//   relay   a resolve request to the host relay over vsock 17002 (protocol.ts): Enclaver's trust model,
//           the host sees every name and may answer anything; the policy still decides what is dialled
//   doh     DNS-over-HTTPS (RFC 8484 POST) to a configured server, through the egress path itself: the
//           host carries TLS it cannot read or forge, so it can refuse DNS but not redirect a name
//
// IPv4 only: transparent egress refuses IPv6 (the stub answers AAAA with no data).

import { Agent, request } from 'node:https';
import { isIP, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import dnsPacket from 'dns-packet';
import { withDeadline } from '../deadline.ts';
import { DnsResolveError } from '../errors.ts';
import { encodeResolveRequest, parseResolveResponse, readFrame } from './protocol.ts';

export interface Resolved {
  addresses: string[];
  /** Seconds the answer may be used (the smallest TTL of its records). */
  ttl: number;
  /** The name does not exist (else: it exists, maybe without A records). */
  nxdomain?: boolean;
}

export interface DnsResolver {
  resolve4(name: string): Promise<Resolved>;
  close(): void;
}

/** Largest DoH response read (a DNS message is at most 64 KiB). */
const MAX_DOH_RESPONSE = 65535;

/** Resolve requests to the host relay, one vsock stream each. */
export function relayResolver(connectRelay: () => Promise<Socket>, timeoutMs: number): DnsResolver {
  return {
    async resolve4(name) {
      const deadline = Date.now() + timeoutMs;
      const late = () => new DnsResolveError(`the host relay did not answer within ${timeoutMs} ms`);
      let sock: Socket | undefined;
      try {
        sock = await withDeadline(connectRelay(), timeoutMs, late);
        sock.on('error', () => {});
        sock.write(encodeResolveRequest(name));
        const reply = parseResolveResponse(await readFrame(sock, Math.max(1, deadline - Date.now())));
        if (!reply.ok)
          throw new DnsResolveError(
            `the host relay could not resolve ${name}: os_err ${reply.os_code}: ${reply.message}`,
          );
        return reply;
      } catch (e) {
        if (e instanceof DnsResolveError) throw e;
        throw new DnsResolveError(
          `asking the host relay to resolve ${name} failed: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      } finally {
        sock?.destroy();
      }
    },
    close() {},
  };
}

export interface DohTarget {
  url: URL;
  /** The DoH server's host and port as the egress policy judged them (dialled through the relay). */
  host: string;
  port: number;
  /** PEM CA certificates to trust instead of Node's bundled roots. */
  ca: string | null;
}

/** RFC 8484 POST queries over a keep-alive HTTPS agent whose connections are egress tunnels. */
export function dohResolver(
  target: DohTarget,
  openTunnel: (host: string, port: number) => Promise<Socket>,
  timeoutMs: number,
): DnsResolver {
  const agent = new Agent({ keepAlive: true, maxSockets: 4 });
  // The agent's connections are tunnels through the host relay; TLS runs end to end inside them.
  (agent as unknown as { createConnection: unknown }).createConnection = (
    _opts: unknown,
    done: (err: Error | null, sock?: Socket) => void,
  ) => {
    openTunnel(target.host, target.port).then(
      (raw) =>
        done(
          null,
          tlsConnect({
            socket: raw,
            // host: what the certificate is checked against (an IP literal in its SAN too); SNI for names only.
            host: target.host,
            ...(isIP(target.host) ? {} : { servername: target.host }),
            ...(target.ca ? { ca: target.ca } : {}),
            ALPNProtocols: ['http/1.1'],
          }),
        ),
      (e: Error) => done(e),
    );
    return undefined;
  };

  function query(name: string): Promise<Buffer> {
    const body = dnsPacket.encode({
      type: 'query',
      id: 0, // RFC 8484 §4.1: 0 keeps the message cacheable
      flags: dnsPacket.RECURSION_DESIRED,
      questions: [{ type: 'A', name }],
    });
    return new Promise((resolve, reject) => {
      const req = request(
        target.url,
        {
          method: 'POST',
          agent,
          // The agent dials target.host:port itself; the URL's host stays the Host header and SNI.
          headers: { 'content-type': 'application/dns-message', accept: 'application/dns-message' },
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (c: Buffer) => {
            size += c.length;
            if (size > MAX_DOH_RESPONSE) return void req.destroy(new Error('response over 64 KiB'));
            chunks.push(c);
          });
          res.on('end', () => {
            if (res.statusCode !== 200) return reject(new Error(`status ${res.statusCode}`));
            resolve(Buffer.concat(chunks));
          });
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
      req.on('error', reject);
      req.end(body);
    });
  }

  return {
    async resolve4(name) {
      let answer: dnsPacket.Packet;
      try {
        answer = dnsPacket.decode(await withDeadline(query(name), timeoutMs, () => new Error('timed out')));
      } catch (e) {
        throw new DnsResolveError(
          `DoH query to ${target.url.origin} for ${name} failed: ${(e as Error).message}`,
          {
            cause: e,
          },
        );
      }
      const rcode = (answer as { rcode?: string }).rcode;
      if (rcode === 'NXDOMAIN') return { addresses: [], ttl: 30, nxdomain: true };
      if (rcode !== 'NOERROR')
        throw new DnsResolveError(`DoH server ${target.url.origin} answered ${rcode} for ${name}`);
      const a = (answer.answers ?? []).filter((r) => r.type === 'A') as dnsPacket.StringAnswer[];
      return {
        addresses: [...new Set(a.map((r) => r.data))],
        ttl: a.length === 0 ? 30 : Math.min(...a.map((r) => r.ttl ?? 0)),
      };
    },
    close() {
      agent.destroy();
    },
  };
}
