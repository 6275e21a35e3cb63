// The host name a connection's first bytes claim (transparent egress, `transparent.check_sni`): the
// server_name of a TLS ClientHello (RFC 8446 §4.1.2, RFC 6066 §3) or the Host header of an HTTP/1
// request. Bytes from the app are untrusted: every length is checked against what is there, and anything
// that is not a complete, well-formed ClientHello or request head gives null (nothing to check), never a throw.

/** The SNI or Host name in `bytes`, lowercase and without a port or trailing dot; null if there is none. */
export function claimedName(bytes: Uint8Array): string | null {
  const b = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const name = b[0] === 0x16 ? clientHelloSni(b) : httpHost(b);
  if (name === null || name === '') return null;
  return name.toLowerCase().replace(/\.$/, '');
}

function clientHelloSni(b: Buffer): string | null {
  // TLS record: type 22 (handshake), version (2), length (2); then handshake type 1 (ClientHello), length (3).
  if (b.length < 9 || b[5] !== 0x01) return null;
  const end = Math.min(b.length, 5 + b.readUInt16BE(3));
  let at = 9 + 2 + 32; // client_version, random
  if (at + 1 > end) return null;
  at += 1 + b[at]!; // session_id
  if (at + 2 > end) return null;
  at += 2 + b.readUInt16BE(at); // cipher_suites
  if (at + 1 > end) return null;
  at += 1 + b[at]!; // compression_methods
  if (at + 2 > end) return null;
  const extEnd = Math.min(end, at + 2 + b.readUInt16BE(at));
  at += 2;
  while (at + 4 <= extEnd) {
    const type = b.readUInt16BE(at);
    const len = b.readUInt16BE(at + 2);
    at += 4;
    if (at + len > extEnd) return null;
    if (type === 0) {
      // server_name: list length (2), then entries of name_type (1) and a 2-byte length.
      let p = at + 2;
      while (p + 3 <= at + len) {
        const nameLen = b.readUInt16BE(p + 1);
        if (p + 3 + nameLen > at + len) return null;
        if (b[p] === 0) return b.toString('latin1', p + 3, p + 3 + nameLen);
        p += 3 + nameLen;
      }
      return null;
    }
    at += len;
  }
  return null;
}

const REQUEST_LINE = /^[A-Z]{3,10} \S+ HTTP\/1\.[01]\r\n/;

function httpHost(b: Buffer): string | null {
  const head = b.toString('latin1', 0, Math.min(b.length, 16384));
  const stop = head.indexOf('\r\n\r\n');
  if (stop < 0 || !REQUEST_LINE.test(head)) return null;
  const m = /\r\nhost:[ \t]*([^\r\n]*)/i.exec(head.slice(0, stop + 2));
  if (!m) return null;
  const host = m[1]!.trim();
  if (host.startsWith('[')) return host.slice(1, host.indexOf(']') >>> 0);
  const colon = host.lastIndexOf(':');
  return colon < 0 ? host : host.slice(0, colon);
}
