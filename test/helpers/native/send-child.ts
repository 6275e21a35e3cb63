// Child process for test/transport-1gib.test.ts: the "host" side. Connects over the emulated
// transport, streams `total` bytes in 1 MiB writes respecting backpressure, half-closes, then
// reads the receiver's digest back. Prints {sent, sha256, reply}.
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { EmulatedTransport } from '../../../src/transport/emulated.ts';

const [dir, cid, port, total] = process.argv.slice(2).map((v, i) => (i === 0 ? v : Number(v))) as [
  string,
  number,
  number,
  number,
];
const CHUNK = 1 << 20;
const sock = await new EmulatedTransport(dir, 2).connect(cid, port);
const replyChunks: Buffer[] = [];
sock.on('data', (d: Buffer) => replyChunks.push(d));
const ended = once(sock, 'end');

const hash = createHash('sha256');
const block = randomBytes(CHUNK);
let sent = 0;
for (let i = 0; sent < total; i++) {
  const n = Math.min(CHUNK, total - sent);
  // A fresh buffer per write (the socket may still hold the previous one); the chunk index makes
  // every chunk distinct, so a lost, repeated or reordered chunk changes the digest.
  const chunk = Buffer.allocUnsafe(n);
  block.copy(chunk, 0, 0, n);
  chunk.writeUInt32BE(i, 0);
  hash.update(chunk);
  sent += n;
  if (!sock.write(chunk)) await once(sock, 'drain');
}
sock.end();
await ended;
console.log(
  JSON.stringify({ sent, sha256: hash.digest('hex'), reply: Buffer.concat(replyChunks).toString() }),
);
