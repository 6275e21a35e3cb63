// The enclave <-> host egress protocol on vsock 17002, byte-compatible with Enclaver's
// (proxy/egress_http.rs, docs/reference/enclaver.md, "Egress wire protocol"):
//
//   enclave proxy                                   host relay
//     [u16 LE length]{"host":"h","port":443}  --->
//                                             <---  [u16 LE length]"Ok"
//                                                   or {"Err":{"os_code":111,"message":"..."}}
//     raw bytes both ways until either side closes
//
// Extension (negotiation-free, safe with either old peer): the request may carry "deny_ips", the
// enclave's IP deny ranges that the host must refuse after resolving a name (odyn bug P4). Enclaver's
// host side deserialises with serde's default (unknown fields ignored), so it simply does not enforce
// them; Enclaver's enclave side never sends them, and the reply format is unchanged.
//
// Extension for transparent egress's DNS stub (relay resolver): a stream may instead carry
//     [u16 LE length]{"resolve":"example.com"}   --->
//                                             <---  {"Resolved":{"addresses":["192.0.2.1"],"ttl":60}}
//                                                   (plus "rcode":"NXDOMAIN" when the name does not exist)
//                                                   or {"Err":{...}} as for a connect
// and is closed after the reply. A relay that predates it (cloister's, or Enclaver's: no "host") answers
// Err 22, which the stub reports as SERVFAIL; nothing else on the wire changes.
import { isIPv4, type Socket } from 'node:net';
import { MAX_EGRESS_FRAME } from '../constants.ts';
import { withDeadline } from '../deadline.ts';
import { FrameError } from '../errors.ts';
import type { NativeAddon } from '../native.ts';

export const MAX_FRAME = MAX_EGRESS_FRAME;
/** Enough for any host name plus a generous deny list; a longer request is refused. */
export const MAX_DENY_IPS = 1024;

export interface ConnectRequest {
  host: string;
  port: number;
  deny_ips?: readonly string[];
}

export type ConnectResponse = { ok: true } | { ok: false; os_code: number; message: string };

/** The DNS stub asks the relay for a name's IPv4 addresses (transparent egress, resolver: relay). */
export interface ResolveRequest {
  resolve: string;
}

export type RelayRequest = ConnectRequest | ResolveRequest;

export type ResolveResponse =
  | { ok: true; addresses: string[]; ttl: number; nxdomain?: boolean }
  | { ok: false; os_code: number; message: string };

/** Most addresses a resolve reply may carry (a frame holds 64 KiB; a DNS answer rarely has over 20). */
export const MAX_RESOLVED = 64;

export { FrameError };

export function encodeFrame(value: unknown): Buffer {
  const json = Buffer.from(JSON.stringify(value));
  // odyn casts the length `as u16`; a longer message would be silently truncated there.
  if (json.length > MAX_FRAME) throw new FrameError(`frame of ${json.length} bytes exceeds ${MAX_FRAME}`);
  const out = Buffer.allocUnsafe(2 + json.length);
  out.writeUInt16LE(json.length, 0);
  json.copy(out, 2);
  return out;
}

export function encodeRequest(req: ConnectRequest): Buffer {
  const body: Record<string, unknown> = { host: req.host, port: req.port };
  if (req.deny_ips && req.deny_ips.length > 0) body.deny_ips = req.deny_ips;
  return encodeFrame(body);
}

export function encodeResolveRequest(name: string): Buffer {
  return encodeFrame({ resolve: name });
}

export function encodeResolveResponse(res: ResolveResponse): Buffer {
  if (!res.ok) return encodeFrame({ Err: { os_code: res.os_code, message: res.message } });
  const body: Record<string, unknown> = { addresses: res.addresses, ttl: res.ttl };
  if (res.nxdomain) body.rcode = 'NXDOMAIN';
  return encodeFrame({ Resolved: body });
}

export function encodeResponse(res: ConnectResponse): Buffer {
  return encodeFrame(res.ok ? 'Ok' : { Err: { os_code: res.os_code, message: res.message } });
}

function parseJson(buf: Buffer): unknown {
  try {
    return JSON.parse(buf.toString('utf8'));
  } catch {
    throw new FrameError('frame is not valid JSON');
  }
}

/** A connect or a resolve request (a connect-only peer treats a resolve frame as a bad request). */
export function parseRelayRequest(buf: Buffer): RelayRequest {
  const v = parseJson(buf) as Record<string, unknown> | null;
  if (typeof v === 'object' && v !== null && !Array.isArray(v) && 'resolve' in v && !('host' in v)) {
    if (typeof v.resolve !== 'string' || v.resolve.length === 0 || v.resolve.length > 253)
      throw new FrameError('request "resolve" must be a name of 1-253 characters');
    return { resolve: v.resolve };
  }
  return connectRequest(v);
}

export function parseRequest(buf: Buffer): ConnectRequest {
  return connectRequest(parseJson(buf) as Record<string, unknown> | null);
}

function connectRequest(v: Record<string, unknown> | null): ConnectRequest {
  if (typeof v !== 'object' || v === null || Array.isArray(v))
    throw new FrameError('request is not a JSON object');
  const { host, port, deny_ips } = v;
  if (typeof host !== 'string' || host.length === 0 || host.length > 1024)
    throw new FrameError('request "host" must be a non-empty string');
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 0 || port > 65535)
    throw new FrameError('request "port" must be an integer 0-65535');
  const req: ConnectRequest = { host, port };
  if (deny_ips !== undefined) {
    if (
      !Array.isArray(deny_ips) ||
      deny_ips.length > MAX_DENY_IPS ||
      !deny_ips.every((x) => typeof x === 'string')
    )
      throw new FrameError(`request "deny_ips" must be an array of at most ${MAX_DENY_IPS} strings`);
    req.deny_ips = deny_ips as string[];
  }
  return req;
}

export function parseResponse(buf: Buffer): ConnectResponse {
  const v = parseJson(buf) as unknown;
  if (v === 'Ok') return { ok: true };
  const err = (v as { Err?: { os_code?: unknown; message?: unknown } } | null)?.Err;
  if (typeof err === 'object' && err !== null) {
    const code = Number.isInteger(err.os_code) ? (err.os_code as number) : 0;
    // The host is untrusted: keep its text short and printable before it reaches a log or a client.
    const message =
      typeof err.message === 'string' ? err.message.replace(/[^\x20-\x7e]/g, '?').slice(0, 512) : '';
    return { ok: false, os_code: code, message };
  }
  throw new FrameError('reply is neither "Ok" nor {"Err":...}');
}

/** A resolve reply. The host is untrusted: every address must be a dotted quad, the TTL a sane integer. */
export function parseResolveResponse(buf: Buffer): ResolveResponse {
  const v = parseJson(buf) as { Resolved?: Record<string, unknown> } | null;
  const r = typeof v === 'object' && v !== null ? v.Resolved : undefined;
  if (typeof r !== 'object' || r === null) {
    const err = parseResponse(buf);
    if (err.ok) throw new FrameError('resolve reply is "Ok", not {"Resolved":...}');
    return err;
  }
  const { addresses, ttl, rcode } = r;
  if (
    !Array.isArray(addresses) ||
    addresses.length > MAX_RESOLVED ||
    !addresses.every((a) => typeof a === 'string' && isIPv4(a))
  )
    throw new FrameError(`"addresses" must be an array of at most ${MAX_RESOLVED} IPv4 addresses`);
  if (typeof ttl !== 'number' || !Number.isInteger(ttl) || ttl < 0 || ttl > 0x7fffffff)
    throw new FrameError('"ttl" must be a non-negative integer');
  return {
    ok: true,
    addresses: addresses as string[],
    ttl,
    ...(rcode === 'NXDOMAIN' ? { nxdomain: true } : {}),
  };
}

/**
 * Reads one length-prefixed frame. Bytes that arrive after it stay in the socket (unshifted, socket
 * paused) for whoever pipes it next. Rejects on EOF, error or timeout.
 */
export function readFrame(socket: Socket, timeoutMs: number): Promise<Buffer> {
  let finish!: (err: Error | null, frame?: Buffer, rest?: Buffer) => void;
  const reading = new Promise<Buffer>((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0);
    finish = (err, frame, rest) => {
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('error', onError);
      socket.off('close', onEnd);
      socket.pause();
      if (err) return reject(err);
      if (rest && rest.length > 0) socket.unshift(rest);
      resolve(frame!);
    };
    const onData = (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (buf.length < 2) return;
      const len = buf.readUInt16LE(0);
      if (len === 0) return finish(new FrameError('empty frame'));
      if (buf.length < 2 + len) return;
      finish(null, buf.subarray(2, 2 + len), buf.subarray(2 + len));
    };
    const onEnd = () => finish(new FrameError('peer closed before a complete frame', 'ECONNRESET'));
    const onError = (e: Error) => finish(e);
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
    socket.resume();
  });
  return withDeadline(reading, timeoutMs, () => {
    const late = new FrameError(`no complete frame within ${timeoutMs} ms`, 'ETIMEDOUT');
    finish(late);
    return late;
  });
}

/** readFrame on a raw fd (the fast path, transport/fast.ts), read exactly by the addon: same results and FrameErrors. */
export async function readFrameFd(
  native: Pick<NativeAddon, 'readFrame'>,
  fd: number,
  timeoutMs: number,
): Promise<Buffer> {
  let frame: Buffer;
  try {
    frame = await native.readFrame(fd, timeoutMs);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ETIMEDOUT') throw new FrameError(`no complete frame within ${timeoutMs} ms`, 'ETIMEDOUT');
    if (code === 'ECONNRESET') throw new FrameError('peer closed before a complete frame', 'ECONNRESET');
    throw e;
  }
  if (frame.length === 0) throw new FrameError('empty frame');
  return frame;
}

/** One stream to the other end, on either connection path: a net.Socket, or a raw fd (transport/fast.ts). */
export interface RelayLink<S> {
  connect(timeoutMs: number): Promise<S>;
  send(s: S, frame: Uint8Array): void;
  readFrame(s: S, timeoutMs: number): Promise<Buffer>;
  destroy(s: S): void;
}

/** A RelayLink over raw fds that `connect` makes (the transport's connectFd). */
export function fdLink(
  native: NativeAddon,
  connect: (timeoutMs: number) => Promise<number>,
): RelayLink<number> {
  return {
    connect,
    send: (fd, frame) => native.sendAll(fd, frame),
    readFrame: (fd, timeoutMs) => readFrameFd(native, fd, timeoutMs),
    destroy: (fd) => native.closeFd(fd),
  };
}

// errno -> the text Rust's io::Error prints, so messages read the same as Enclaver's.
const OS_TEXT: Record<string, [number, string]> = {
  EACCES: [13, 'Permission denied'],
  ECONNREFUSED: [111, 'Connection refused'],
  ECONNRESET: [104, 'Connection reset by peer'],
  EHOSTUNREACH: [113, 'No route to host'],
  ENETUNREACH: [101, 'Network is unreachable'],
  ETIMEDOUT: [110, 'Connection timed out'],
  EADDRNOTAVAIL: [99, 'Cannot assign requested address'],
  EINVAL: [22, 'Invalid argument'],
  EMFILE: [24, 'Too many open files'],
};

export function errnoOf(code: string): number {
  return OS_TEXT[code]?.[0] ?? 0;
}

/** Converts a Node error to the {os_code, message} pair of the wire. DNS failures have no errno (0). */
export function toWireError(err: NodeJS.ErrnoException, context = ''): { os_code: number; message: string } {
  const code = err.code ?? '';
  const known = OS_TEXT[code];
  const suffix = context ? ` (${context})` : '';
  if (known) return { os_code: known[0], message: `${known[1]} (os error ${known[0]})${suffix}` };
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN' || code === 'EAI_FAIL' || code === 'ENODATA')
    return { os_code: 0, message: `failed to lookup address information: ${code}${suffix}` };
  return { os_code: 0, message: `${err.message}${suffix}` };
}
