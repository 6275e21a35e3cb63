// Raw-socket helpers for tests of hostile clients: what they send is not always valid HTTP.
import { connect } from 'node:net';

export interface RawReply {
  status: number;
  headers: string;
  body: string;
  /** The server closed the connection (rather than the test giving up on it). */
  closed: boolean;
}

/**
 * Writes raw bytes on a fresh TCP connection and collects what comes back until the server closes it
 * or `waitMs` passes (then the test closes it and reports closed = false). The 10 s default is a bound for
 * a loaded machine (an attested call makes keys and documents), not an expected time.
 */
export function raw(port: number, head: string, body?: Buffer, waitMs = 10_000): Promise<RawReply> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.destroy();
      const text = Buffer.concat(chunks).toString('utf8');
      const end = text.indexOf('\r\n\r\n');
      resolve({
        status: Number(/^HTTP\/1\.1 (\d{3})/.exec(text)?.[1] ?? 0),
        headers: end === -1 ? text : text.slice(0, end),
        body: end === -1 ? '' : text.slice(end + 4),
        closed,
      });
    };
    const timer = setTimeout(() => finish(false), waitMs);
    s.on('data', (d: Buffer) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => finish(true));
    s.write(head);
    if (body) s.write(body, () => {});
  });
}

/** A well-formed SigV4 Authorization header with a wrong signature, scoped to `region`. */
export function fakeAuthorization(region = 'us-east-1'): string {
  return `AWS4-HMAC-SHA256 Credential=AKIDX/20260101/${region}/kms/aws4_request, SignedHeaders=host, Signature=${'0'.repeat(64)}`;
}
