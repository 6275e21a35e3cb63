// Builds every interop program before the tests run (CI calls this from .ci/run so the download and
// compile time shows as its own step): `node --import tsx test/interop/prepare.ts`.
import { CACHE_DIR, goProgram, pythonVenv, rustProgram } from './toolchains.ts';

for (const [what, build] of [
  ['Go (test/interop/go)', goProgram],
  ['Rust (test/interop/rust)', rustProgram],
  ['Python venv (test/interop/python)', pythonVenv],
] as const) {
  const t0 = Date.now();
  const out = build();
  console.log(`${what}: ${out} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
}
console.log(`cache: ${CACHE_DIR}`);
