// Checks shared by cloister's commands (`enclave`, `host`, `dev`, `attestation`) on top of node:util's
// parseArgs, so the same mistake gets the same message from each: "--transport must be vsock or
// emulated, not 'x'". A UsageError means exit 2 with the usage text.

import { UsageError } from './errors.ts';

export { UsageError };

/** Splits at the first `--`: the command's own flags, and the app's argv untouched (it may hold `--`). */
export function splitAppArgv(argv: string[]): { own: string[]; app: string[] } {
  const sep = argv.indexOf('--');
  return sep === -1 ? { own: argv, app: [] } : { own: argv.slice(0, sep), app: argv.slice(sep + 1) };
}

/** `value` if it is one of `choices` (undefined stays undefined), else a UsageError naming them. */
export function oneOf<const T extends string>(
  value: string | undefined,
  flag: string,
  choices: readonly T[],
): T | undefined {
  if (value === undefined || (choices as readonly string[]).includes(value)) return value as T | undefined;
  const list = choices.length > 1 ? `${choices.slice(0, -1).join(', ')} or ${choices.at(-1)}` : choices[0];
  throw new UsageError(`${flag} must be ${list}, not '${value}'`);
}

/** A decimal integer flag in [min, max] (undefined stays undefined), else a UsageError. */
export function intFlag(
  value: string | undefined,
  flag: string,
  min: number,
  max = Number.MAX_SAFE_INTEGER,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `>= ${min}` : `from ${min} to ${max}`;
    throw new UsageError(`${flag} must be an integer ${range}, not '${value}'`);
  }
  return n;
}
