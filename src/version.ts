// The version is package.json's own: bundled into dist/ and the single executable by esbuild, so
// `cloister --version` can never disagree with the package.
import pkg from '../package.json' with { type: 'json' };

export const VERSION: string = pkg.version;
