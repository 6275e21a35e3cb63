// Replaced at bundle time by scripts/build.mjs; falls back to package.json when run from source.
export const VERSION = '0.1.0';
