// A client of the enclave's egress proxy (127.0.0.1:10000) speaking HTTP CONNECT by hand, and small TCP
// servers on the guest's loopback standing in for the internet: every tunnel goes proxy -> real vsock
// (CID 1, port 17002) -> cloister host's relay -> the server.
import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { keystream } from './bytes.ts';

export interface ProxyReply {
  status: number;
  head: string;
  /** The tunnel (status 200) or the rest of the refusal's body. */
  socket: Socket;
  body: Buffer;
}

/** Sends `CONNECT target` to the egress proxy; resolves with the reply head and the socket. */
export function proxyConnect(target: string, proxyPort = 10000): Promise<ProxyReply> {
  return new Promise((resolve, reject) => {
    // allowHalfOpen: the server's FIN must not end our own sending (half-close scenarios).
    const s = connect({ port: proxyPort, host: '127.0.0.1', allowHalfOpen: true });
    let buf = Buffer.alloc(0);
    s.on('error', reject);
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      s.pause();
      const head = buf.subarray(0, end).toString('latin1');
      const rest = buf.subarray(end + 4);
      if (rest.length > 0) s.unshift(rest);
      const status = Number(head.split(' ')[1]);
      if (status === 200) return resolve({ status, head, socket: s, body: Buffer.alloc(0) });
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      s.on('end', () => {
        s.end();
        resolve({ status, head, socket: s, body: Buffer.concat(chunks) });
      });
      s.resume();
    };
    s.on('data', onData);
  });
}

/** Resolves with everything `s` sends until its FIN, hashed. */
export function drainHash(s: Socket): Promise<{ sha256: string; bytes: number }> {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    let bytes = 0;
    s.on('data', (c: Buffer) => {
      h.update(c);
      bytes += c.length;
    });
    s.on('end', () => resolve({ sha256: h.digest('hex'), bytes }));
    s.on('error', reject);
    s.resume();
  });
}

/** Writes the keystream of `seed` to `s` with backpressure; ends the write side if `end`. */
export async function sendStream(s: Socket, seed: string, bytes: number, end = true): Promise<void> {
  for (const b of keystream(seed, bytes)) {
    if (!s.write(b)) await new Promise((r) => s.once('drain', r));
  }
  if (end) s.end();
}

export async function listenLocal(onConn: (s: Socket) => void): Promise<{ server: Server; port: number }> {
  const server = createServer({ allowHalfOpen: true }, onConn);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as { port: number }).port };
}
