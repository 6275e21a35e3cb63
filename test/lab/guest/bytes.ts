// Deterministic bulk data both ends can produce and check without sending a hash alongside: a 64 KiB
// block derived from a seed, repeated, each copy stamped with its index (so a lost, repeated or reordered
// chunk changes the SHA-256). Cheap to make: under TCG the guest's CPU is the bottleneck, so the bytes
// should cost nothing but the copy.
import { createCipheriv, createHash } from 'node:crypto';

const CHUNK = 64 * 1024;
const expected = new Map<string, string>();

function block(seed: string): Buffer {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  return createCipheriv('aes-128-ctr', key, Buffer.alloc(16)).update(Buffer.alloc(CHUNK));
}

export function* keystream(seed: string, bytes: number): Generator<Buffer> {
  const base = block(seed);
  for (let i = 0, left = bytes; left > 0; i++, left -= CHUNK) {
    const b = Buffer.from(base.subarray(0, Math.min(CHUNK, left)));
    b.writeUInt32LE(i, 0);
    yield b;
  }
}

/** SHA-256 of keystream(seed, bytes), computed once per pair. */
export function sha256Of(seed: string, bytes: number): string {
  const k = `${seed}\0${bytes}`;
  let v = expected.get(k);
  if (!v) {
    const h = createHash('sha256');
    for (const b of keystream(seed, bytes)) h.update(b);
    v = h.digest('hex');
    expected.set(k, v);
  }
  return v;
}

export const MiB = 1024 * 1024;
