// What the build leaves for the tests and benches to run: the bundle (dist/cli.js, `npm run build`), the
// single executable (build/cloister-linux-<arch>, `npm run build:binary`) and the pinned Node runtime in
// the build cache. The pinned version and the paths come from scripts/build-binary.mjs, which makes them,
// so a test cannot look in another place than the build writes to.
import { join, resolve } from 'node:path';
// @ts-expect-error: a plain .mjs script without type declarations
import * as build from '../../scripts/build-binary.mjs';

const typed = build as {
  NODE_VERSION: string;
  pinnedNode(arch?: string): string;
  cachedPinnedNode(arch?: string): string;
  binaryPath(arch?: string): string;
};

/** The checkout. */
export const REPO = resolve(import.meta.dirname, '../..');
/** `npm run build`'s bundle: what `node dist/cli.js` runs. */
export const DIST_CLI = join(REPO, 'dist', 'cli.js');
/** The Node version inside the single executable. */
export const NODE_VERSION = typed.NODE_VERSION;
/** The pinned runtime's bin/node, fetched into the build cache if it is not there yet. */
export const pinnedNode = (arch?: string): string => typed.pinnedNode(arch);
/** Where the pinned runtime's bin/node is once a build fetched it; nothing is fetched. */
export const cachedPinnedNode = (arch?: string): string => typed.cachedPinnedNode(arch);
/** The single executable `npm run build:binary` writes for `arch` (default: this machine's). */
export const binaryPath = (arch?: string): string => typed.binaryPath(arch);
