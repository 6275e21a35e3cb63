// Reproducible randomness for fuzz cases. Each use takes its seed from TEST_SEED when set, else a fresh one,
// and reports it as a test diagnostic, so a failure seen once can be replayed exactly:
//   TEST_SEED=123456789 node scripts/run-tests.mjs unit/egress/relay
// The generator is sfc32 (small, fast, good enough to find parser bugs; not for anything secret).
import { randomInt } from 'node:crypto';
import type { TestContext } from 'node:test';

export interface SeededRandom {
  readonly seed: number;
  /** An integer in [min, max). */
  int(min: number, max: number): number;
  bytes(n: number): Buffer;
}

export function seededRandom(t: TestContext): SeededRandom {
  const fromEnv = process.env.TEST_SEED;
  const seed = fromEnv !== undefined ? Number(fromEnv) >>> 0 : randomInt(2 ** 32 - 1);
  t.diagnostic(`seed ${seed} (replay: TEST_SEED=${seed})`);
  let a = 0x9e3779b9;
  let b = 0x243f6a88;
  let c = 0xb7e15162;
  let d = seed;
  const next = (): number => {
    const r = (((a + b) | 0) + d) | 0;
    d = (d + 1) | 0;
    a = b ^ (b >>> 9);
    b = (c + (c << 3)) | 0;
    c = (c << 21) | (c >>> 11);
    c = (c + r) | 0;
    return r >>> 0;
  };
  for (let i = 0; i < 12; i++) next(); // mix the seed in before the first output
  return {
    seed,
    int: (min, max) => min + Math.floor((next() / 2 ** 32) * (max - min)),
    bytes: (n) => {
      const out = Buffer.alloc(n);
      for (let i = 0; i < n; i++) out[i] = next() & 0xff;
      return out;
    },
  };
}
