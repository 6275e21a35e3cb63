// The egress proxy's fast path reads a CONNECT request head itself (src/transport/fast.ts) instead of
// through Node's HTTP server. This parser is deliberately narrower than HTTP: it recognises only a
// complete, plainly well-formed CONNECT head and answers null for everything else, which then goes to
// Node's HTTP server exactly as before (so every malformed, slow, oversized or non-CONNECT request
// meets the same checks, error codes and bodies as it always did). What it accepts, Node accepts too,
// with the same request target.

/** A CONNECT head the fast path may serve: its target (as Node's req.url) and its length in bytes. */
export interface ConnectHead {
  authority: string;
  length: number;
}

const CRLF2 = Buffer.from('\r\n\r\n');
// Request line: RFC 9112 §3 with an authority-form target (RFC 3986 authority characters only).
const REQUEST_LINE = /^CONNECT ([A-Za-z0-9\-._~:@!$&'()*+,;=%[\]]+) HTTP\/1\.[01]$/;
// field-name ":" OWS field-value OWS; no obs-fold, no control characters but HTAB (RFC 9112 §5).
const FIELD = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[\t\x20-\x7e\x80-\xff]*$/;
// Framing fields have no meaning on CONNECT and Node treats them specially: leave those heads to it.
const FRAMING = /^(content-length|transfer-encoding):/i;

/**
 * The CONNECT head at the start of `bytes`, or null when `bytes` does not start with a complete,
 * well-formed one of at most `maxBytes` (Node's HTTP server then handles the connection).
 */
export function parseConnectHead(bytes: Buffer, maxBytes: number): ConnectHead | null {
  const end = bytes.indexOf(CRLF2);
  if (end < 0 || end + 4 > maxBytes) return null;
  const lines = bytes.toString('latin1', 0, end).split('\r\n');
  const m = REQUEST_LINE.exec(lines[0]!);
  if (!m) return null;
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i]!;
    if (!FIELD.test(line) || FRAMING.test(line)) return null;
  }
  return { authority: m[1]!, length: end + 4 };
}
