// Builds the interop programs (Go, Rust) and the PyPI virtual environment, each cached under
// ~/.cache/cloister-interop (override: CLOISTER_INTEROP_CACHE), so only the first run pays for downloads
// and compiles. A missing toolchain throws an error naming it: these tests never pass silently.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export const INTEROP_DIR = new URL('.', import.meta.url).pathname;
export const CACHE_DIR = process.env.CLOISTER_INTEROP_CACHE ?? join(homedir(), '.cache', 'cloister-interop');

/** Throws naming `tool` unless `tool args` runs. */
export function requireTool(tool: string, args: string[], what: string): void {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(
      `interop tests need ${what} ('${tool}' on PATH): ${r.error?.message ?? r.stderr.trim()} ` +
        '(see test/interop/README.md)',
    );
}

function run(cmd: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}): void {
  const r = spawnSync(cmd, args, {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, ...env },
    timeout: 20 * 60_000,
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error || r.status !== 0)
    throw new Error(
      `${cmd} ${args.join(' ')} failed in ${cwd} (${r.error?.message ?? `exit ${r.status}`}):\n` +
        `${r.stdout.slice(-3000)}\n${r.stderr.slice(-6000)}`,
    );
}

/** test/interop/go built as one binary (go's own build cache makes a rebuild a link step). */
export function goProgram(): string {
  requireTool('go', ['version'], 'the Go toolchain');
  mkdirSync(CACHE_DIR, { recursive: true });
  const out = join(CACHE_DIR, 'interop-go');
  // -mod=readonly: go.mod/go.sum pin every module; a build never edits them.
  run('go', ['build', '-mod=readonly', '-trimpath', '-o', out, '.'], join(INTEROP_DIR, 'go'));
  return out;
}

/** test/interop/rust built in release mode; Cargo.lock pins every crate (--locked). */
export function rustProgram(): string {
  requireTool('cargo', ['--version'], 'the Rust toolchain (cargo)');
  const target = join(CACHE_DIR, 'rust-target');
  run('cargo', ['build', '--release', '--locked', '--quiet', '-j', '2'], join(INTEROP_DIR, 'rust'), {
    CARGO_TARGET_DIR: target,
  });
  return join(target, 'release', 'cloister-interop');
}

/**
 * A virtual environment with test/interop/python/requirements.txt (pinned boto3/botocore from PyPI),
 * keyed by the requirements' hash; returns its python.
 */
export function pythonVenv(): string {
  requireTool('python3', ['-c', 'import venv, ensurepip'], 'Python 3 with venv and ensurepip (python3-venv)');
  const req = join(INTEROP_DIR, 'python', 'requirements.txt');
  const key = createHash('sha256').update(readFileSync(req)).digest('hex').slice(0, 16);
  const venv = join(CACHE_DIR, `venv-${key}`);
  const python = join(venv, 'bin', 'python');
  if (!existsSync(join(venv, '.complete'))) {
    mkdirSync(CACHE_DIR, { recursive: true });
    run('python3', ['-m', 'venv', '--clear', venv], CACHE_DIR);
    run(python, ['-m', 'pip', 'install', '--quiet', '--no-input', '-r', req], CACHE_DIR);
    run('touch', [join(venv, '.complete')], CACHE_DIR);
  }
  return python;
}

/** Runs one operation of the Rust program: `input` as JSON on stdin, the parsed JSON answer back. */
export function runRust(binary: string, op: string, input: unknown): unknown {
  const r = spawnSync(binary, [op], {
    input: JSON.stringify(input),
    encoding: 'utf8',
    maxBuffer: 64 * 1024 * 1024,
  });
  if (r.error || r.status !== 0)
    throw new Error(`cloister-interop ${op} failed (${r.error?.message ?? `exit ${r.status}`}): ${r.stderr}`);
  return JSON.parse(r.stdout);
}
