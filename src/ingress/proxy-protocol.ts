// PROXY protocol v2 (haproxy.org/download/2.9/doc/proxy-protocol.txt, section 2.2): a binary header the
// host side puts in front of an ingress connection so the app can learn the client's address, which
// vsock otherwise hides (the enclave only ever sees the parent's CID).
//
//   host: TCP accept -> [PPv2 header][client bytes] -> vsock -> enclave: read + check the header ->
//         127.0.0.1:<port>: [PPv2 header][client bytes, decrypted if the port terminates TLS]
//
// The enclave side takes the header off before TLS (a TLS server would choke on it) and hands the same
// header to the app ahead of the plaintext, so a plain and a TLS port look alike to the app.
import { isIPv4, isIPv6, type Socket } from 'node:net';
import { withDeadline } from '../deadline.ts';
import { ProxyHeaderError } from '../errors.ts';

export const PPV2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const FIXED_LEN = 16;
/** Header bodies from our own host side are 12 or 36 bytes; TLVs could add some. Cap what we buffer. */
const MAX_BODY = 1024;

export interface ProxyAddresses {
  family: 'IPv4' | 'IPv6' | 'unspec';
  sourceAddress?: string;
  sourcePort?: number;
  destAddress?: string;
  destPort?: number;
}

function v4(addr: string): string | null {
  if (isIPv4(addr)) return addr;
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(addr);
  return m?.[1] ?? null;
}

function ipv6Bytes(addr: string): Buffer {
  // Expand "a:b::c" (with an optional dotted IPv4 tail) into 16 bytes.
  let s = addr;
  const tail = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (tail?.[1]) {
    const [a, b, c, d] = tail[1].split('.').map(Number) as [number, number, number, number];
    s = `${s.slice(0, -tail[1].length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, rest] = s.includes('::') ? s.split('::') : [s, undefined];
  const h = head ? head.split(':') : [];
  const r = rest ? rest.split(':') : [];
  const groups = rest === undefined ? h : [...h, ...Array(8 - h.length - r.length).fill('0'), ...r];
  const out = Buffer.alloc(16);
  for (const [i, g] of groups.entries()) out.writeUInt16BE(Number.parseInt(g || '0', 16), i * 2);
  return out;
}

function ipv6String(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  return groups.join(':').replace(/(^|:)0(:0)+(:|$)/, '::');
}

/** Builds a PROXY v2 header for a TCP connection (source = the client, destination = our listener). */
export function encodeProxyV2(
  src: { address: string; port: number },
  dst: { address: string; port: number },
): Buffer {
  const s4 = v4(src.address);
  const d4 = v4(dst.address);
  if (s4 && d4) {
    const body = Buffer.alloc(12);
    Buffer.from(s4.split('.').map(Number)).copy(body, 0);
    Buffer.from(d4.split('.').map(Number)).copy(body, 4);
    body.writeUInt16BE(src.port, 8);
    body.writeUInt16BE(dst.port, 10);
    return Buffer.concat([PPV2_SIGNATURE, Buffer.from([0x21, 0x11, 0, 12]), body]);
  }
  if (isIPv6(src.address) && isIPv6(dst.address)) {
    const body = Buffer.alloc(36);
    ipv6Bytes(src.address).copy(body, 0);
    ipv6Bytes(dst.address).copy(body, 16);
    body.writeUInt16BE(src.port, 32);
    body.writeUInt16BE(dst.port, 34);
    return Buffer.concat([PPV2_SIGNATURE, Buffer.from([0x21, 0x21, 0, 36]), body]);
  }
  // Mixed or unknown families: PROXY command with UNSPEC family ("the receiver must ignore the addresses").
  return Buffer.concat([PPV2_SIGNATURE, Buffer.from([0x21, 0x00, 0, 0])]);
}

export { ProxyHeaderError };

/** Parses a complete header (as returned by readProxyV2). Throws ProxyHeaderError on anything malformed. */
export function decodeProxyV2(header: Buffer): ProxyAddresses {
  if (header.length < FIXED_LEN || !header.subarray(0, 12).equals(PPV2_SIGNATURE)) {
    throw new ProxyHeaderError('not a PROXY protocol v2 header');
  }
  const verCmd = header[12]!;
  const fam = header[13]!;
  const len = header.readUInt16BE(14);
  if (verCmd >> 4 !== 2) throw new ProxyHeaderError(`unsupported PROXY protocol version ${verCmd >> 4}`);
  if ((verCmd & 0xf) > 1) throw new ProxyHeaderError(`unknown PROXY command ${verCmd & 0xf}`);
  if (header.length !== FIXED_LEN + len) throw new ProxyHeaderError('PROXY header length mismatch');
  const body = header.subarray(FIXED_LEN);
  if ((verCmd & 0xf) === 0 || fam === 0x00) return { family: 'unspec' };
  if (fam === 0x11) {
    if (len < 12) throw new ProxyHeaderError('PROXY header too short for TCP/IPv4');
    return {
      family: 'IPv4',
      sourceAddress: [...body.subarray(0, 4)].join('.'),
      destAddress: [...body.subarray(4, 8)].join('.'),
      sourcePort: body.readUInt16BE(8),
      destPort: body.readUInt16BE(10),
    };
  }
  if (fam === 0x21) {
    if (len < 36) throw new ProxyHeaderError('PROXY header too short for TCP/IPv6');
    return {
      family: 'IPv6',
      sourceAddress: ipv6String(body.subarray(0, 16)),
      destAddress: ipv6String(body.subarray(16, 32)),
      sourcePort: body.readUInt16BE(32),
      destPort: body.readUInt16BE(34),
    };
  }
  throw new ProxyHeaderError(`unsupported PROXY address family 0x${fam.toString(16)}`);
}

/** Bytes of the address block per family byte (TCP/UDP over IPv4, IPv6); anything else carries none. */
const ADDRESS_BYTES: Record<number, number> = { 17: 12, 18: 12, 33: 36, 34: 36 };

/**
 * The header with only the TLVs whose type is in `keep` (section 2.2.7: type, 16-bit length, value),
 * in the order they came. TLVs are the sender's claims (the SSL TLV says a client certificate was
 * verified, 0xEA names an AWS VPC endpoint) and the sender is the untrusted host: none reaches the app
 * unless configured. A TLV area that does not parse is refused (ProxyHeaderError), kept types or not.
 * A LOCAL or UNSPEC header carries no addresses the app may use: it is passed on with an empty body.
 */
export function keepTlvs(header: Buffer, keep: ReadonlySet<number>): Buffer {
  const info = decodeProxyV2(header);
  const body = header.subarray(FIXED_LEN);
  const addrLen = info.family === 'unspec' ? body.length : ADDRESS_BYTES[header[13]!]!;
  const kept: Buffer[] = [];
  for (let at = addrLen; at < body.length; ) {
    if (body.length - at < 3) throw new ProxyHeaderError('PROXY header has a truncated TLV');
    const len = body.readUInt16BE(at + 1);
    if (body.length - at - 3 < len)
      throw new ProxyHeaderError('PROXY header has a TLV longer than the header');
    if (keep.has(body[at]!)) kept.push(body.subarray(at, at + 3 + len));
    at += 3 + len;
  }
  const out = Buffer.concat([
    header.subarray(0, FIXED_LEN + (info.family === 'unspec' ? 0 : addrLen)),
    ...kept,
  ]);
  out.writeUInt16BE(out.length - FIXED_LEN, 14);
  return out;
}

/**
 * Reads exactly one PROXY v2 header off the front of `sock` and leaves everything after it unread
 * (pushed back with unshift, so a plain pipe() sees it; TLS over the raw handle would not: see
 * streamOver). Rejects on a bad signature, an oversized header, EOF or the timeout.
 */
export function readProxyV2(sock: Socket, timeoutMs: number): Promise<Buffer> {
  let finish!: (err: Error | null, header?: Buffer, rest?: Buffer) => void;
  const reading = new Promise<Buffer>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    finish = (err, header, rest) => {
      sock.off('data', onData);
      sock.off('end', onEnd);
      sock.off('error', onEnd);
      sock.pause();
      if (err) return reject(err);
      if (rest && rest.length > 0) sock.unshift(rest);
      resolve(header!);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      const sigLen = Math.min(buf.length, 12);
      if (!buf.subarray(0, sigLen).equals(PPV2_SIGNATURE.subarray(0, sigLen))) {
        return finish(new ProxyHeaderError('connection does not start with a PROXY protocol v2 header'));
      }
      if (buf.length < FIXED_LEN) return;
      const len = buf.readUInt16BE(14);
      if (len > MAX_BODY) return finish(new ProxyHeaderError(`PROXY header of ${len} bytes is too long`));
      if (buf.length < FIXED_LEN + len) return;
      const header = Buffer.from(buf.subarray(0, FIXED_LEN + len));
      try {
        decodeProxyV2(header);
      } catch (err) {
        return finish(err as Error);
      }
      finish(null, header, buf.subarray(FIXED_LEN + len));
    };
    const onEnd = () =>
      finish(new ProxyHeaderError('connection closed before the PROXY header was complete'));
    sock.on('data', onData);
    sock.once('end', onEnd);
    sock.once('error', onEnd);
  });
  return withDeadline(reading, timeoutMs, () => {
    const late = new ProxyHeaderError('timed out waiting for the PROXY header');
    finish(late);
    return late;
  });
}
