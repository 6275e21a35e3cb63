// Bundles src/cli.ts into dist/cli.js with esbuild (transpile only; `npm run typecheck` checks types).
// One bundle keeps startup fast and is what the single-executable build wraps.
import { build } from 'esbuild';

await build({
  entryPoints: ['src/cli.ts'],
  outfile: 'dist/cli.js',
  bundle: true,
  platform: 'node',
  format: 'esm',
  target: 'node20',
  sourcemap: 'linked',
  logLevel: 'warning',
  // Some CommonJS dependencies call require(); give the ESM bundle one.
  banner: {
    js: "import { createRequire as __cloisterCreateRequire } from 'node:module'; const require = __cloisterCreateRequire(import.meta.url);",
  },
});
