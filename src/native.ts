// Loads the N-API addon built from native/. Looked up beside the bundle, beside the sources, or at
// $CLOISTER_NATIVE (the single-executable build ships the .node file next to the binary).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface NativeAddon {
  [fn: string]: unknown;
}

let cached: NativeAddon | undefined;

export function nativeCandidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const list: string[] = [];
  if (process.env.CLOISTER_NATIVE) list.push(process.env.CLOISTER_NATIVE);
  list.push(join(dirname(process.execPath), 'cloister_native.node'));
  for (const up of ['..', '../..']) list.push(join(here, up, 'native/build/Release/cloister_native.node'));
  return list;
}

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const tried = nativeCandidates();
  for (const p of tried) {
    if (existsSync(p)) {
      cached = require(p) as NativeAddon;
      return cached;
    }
  }
  throw new Error(`cloister native addon not found (tried: ${tried.join(', ')}); run \`npm ci\` to build it`);
}
