import { build } from 'esbuild';
await build({
  entryPoints: ['src/cli.ts'], outdir: '/tmp/splitdist', splitting: true, bundle: true, platform: 'node', format: 'esm', target: 'node20', logLevel: 'warning',
  banner: { js: "import { createRequire as __cloisterCreateRequire } from 'node:module'; const require = __cloisterCreateRequire(import.meta.url);" },
});
