// A client of the enclave's egress proxy (127.0.0.1:10000) speaking HTTP CONNECT by hand, and small TCP
// servers on the guest's loopback standing in for the internet: every tunnel goes proxy -> real vsock
// (CID 1, port 17002) -> cloister host's relay -> the server.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { keystream, sha256Of } from './bytes.ts';
import type { ScenarioContext } from './lab.ts';

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

/** Resolves with everything `s` sends until its FIN (or a response until its end), hashed. */
export function drainHash(s: Readable): Promise<{ sha256: string; bytes: number }> {
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

/** Writes the keystream of `seed` to `s` (a socket, a request) with backpressure; ends it if `end`. */
export async function sendStream(s: Writable, seed: string, bytes: number, end = true): Promise<void> {
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

export interface BothWays {
  /** The server's connection handler: hashes what arrives, sends `<seed>-down`. */
  serve(s: Socket): void;
  /** The client side on `c`: sends `<seed>-up`, hashes what comes back, checks both ends; resolves with ms. */
  run(c: Socket): Promise<number>;
}

/** One bulk transfer both ways, checked at both ends with the keystreams' SHA-256. */
export function bothWays(seed: string, bytes: number): BothWays {
  let got: Promise<{ sha256: string; bytes: number }> | undefined;
  return {
    serve(s) {
      got = drainHash(s);
      void sendStream(s, `${seed}-down`, bytes);
    },
    async run(c) {
      const started = Date.now();
      const [down] = await Promise.all([drainHash(c), sendStream(c, `${seed}-up`, bytes)]);
      const ms = Date.now() - started;
      assert.deepEqual(down, { sha256: sha256Of(`${seed}-down`, bytes), bytes });
      assert.ok(got, 'the server saw the connection');
      assert.deepEqual(await got, { sha256: sha256Of(`${seed}-up`, bytes), bytes });
      return ms;
    },
  };
}

/** The numbers bench/lab.ts reads from a both-ways bulk scenario's result. */
export function noteThroughput(ctx: ScenarioContext, bytes: number, ms: number): void {
  ctx.note('both_ways_ms', ms);
  ctx.note('mib_per_s_each_way', Math.round((bytes / (1024 * 1024) / (ms / 1000)) * 10) / 10);
}
