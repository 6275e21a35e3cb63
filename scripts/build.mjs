// Bundles src/cli.ts into dist/ with esbuild (transpile only; `npm run typecheck` checks types).
// Code splitting: cli.ts's lazy import()s of each subcommand become their own chunks, so
// `cloister enclave` never parses the KMS emulator and `--version` parses almost nothing (measured:
// app start 111 ms vs 130 ms, --version 68 ms vs 143 ms, idle RSS 55.8 vs 61.3 MiB; BENCHMARKS.md).
// The single executable uses its own one-file bundle (scripts/build-binary.mjs). A second entry,
// dist/attested-tls.js, is the package's `cloister/attested-tls` export (docs/attested-tls.md, "From Node").
import { rmSync } from 'node:fs';
import { build } from 'esbuild';

rmSync('dist', { recursive: true, force: true });
await build({
  entryPoints: { cli: 'src/cli.ts', 'attested-tls': 'src/attested-tls/index.ts' },
  outdir: 'dist',
  entryNames: '[name]',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  // Some CommonJS dependencies call require(); give every ESM chunk one.
  banner: {
    js: "import { createRequire as __cloisterCreateRequire } from 'node:module'; const require = __cloisterCreateRequire(import.meta.url);",
  },
});
