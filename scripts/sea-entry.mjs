// Entry point of the single executable (scripts/build-binary.mjs bundles it with src/cli.ts).
// The native addon travels inside the binary as a SEA asset. Node can only dlopen() a file, so the
// asset is written to a private directory (mkdtemp: 0700, random name, never a predictable path that
// another user could plant first) and handed to src/native.ts through $CLOISTER_NATIVE, which it
// already honours. Precedence stays the documented one: $CLOISTER_NATIVE set by the operator, then
// cloister_native.node beside the binary, then the embedded copy.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, dirname, join } from 'node:path';
import sea from 'node:sea';

const ADDON_ASSET = 'cloister_native.node';

function useEmbeddedAddon() {
  if (!sea.isSea() || process.env.CLOISTER_NATIVE) return;
  if (existsSync(join(dirname(process.execPath), ADDON_ASSET))) return;
  if (!sea.getAssetKeys().includes(ADDON_ASSET)) return;
  let dir;
  try {
    dir = mkdtempSync(join(tmpdir(), 'cloister-native-'));
    const file = join(dir, ADDON_ASSET);
    writeFileSync(file, new Uint8Array(sea.getRawAsset(ADDON_ASSET)), { mode: 0o500, flag: 'wx' });
    process.env.CLOISTER_NATIVE = file;
    // The file only has to exist until dlopen(); remove it when the process ends.
    process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  } catch {
    // A read-only or missing temp dir: commands that need no addon (dev, attest, --version) still work,
    // and the ones that do fail in src/native.ts with the list of places tried (set $TMPDIR, or put
    // cloister_native.node beside the binary).
    if (dir) rmSync(dir, { recursive: true, force: true });
  }
}

// Enclaver's build takes /usr/local/bin/odyn from the `sources.supervisor` (E6: `sources.odyn`) image,
// installs it as /sbin/odyn and runs `/sbin/odyn --config-dir /etc/enclaver -- app...`. Installed
// under that name, this binary is the supervisor: odyn's arguments are `cloister enclave`'s.
function odynCompat() {
  const names = [basename(process.argv0 ?? ''), basename(process.execPath)];
  if (!names.includes('odyn')) return;
  const first = process.argv[2];
  if (first === 'enclave' || first === '--version' || first === '-V') return;
  process.argv.splice(2, 0, 'enclave');
}

// Code that re-runs cloister as `process.execPath process.argv[1] <command>` (the usual way for a
// script) passes the binary's own path as the first argument here, since argv[1] is the executable.
function dropSelfArgument() {
  if (sea.isSea() && process.argv[2] === process.argv[1]) process.argv.splice(2, 1);
}

dropSelfArgument();
odynCompat();
useEmbeddedAddon();
await import('../src/cli.ts');
