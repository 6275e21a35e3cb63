// Finds the command-line clients the tests drive, on PATH. A tool must pass its check (the aws CLI must be
// v2; python3 must import boto3): the first one on PATH that does is used, so a shim of another version in
// front (pyenv's aws v1, a python3 without boto3) does not shadow the system one. When none passes, the
// error names the tool, what was found instead, and the Debian package scripts/setup-test-deps.sh installs.
import { spawnSync } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';

interface ToolSpec {
  command: string;
  /** What the test needs, for the error message. */
  what: string;
  /** The Debian package that provides it (listed in scripts/setup-test-deps.sh). */
  debian: string;
  /** Returns undefined when this executable will do, else why not. */
  check(path: string): string | undefined;
}

const TOOLS = {
  awsV2: {
    command: 'aws',
    what: 'the aws CLI v2',
    debian: 'awscli',
    check(path) {
      const r = spawnSync(path, ['--version'], { encoding: 'utf8', timeout: 30_000 });
      const v = `${r.stdout}${r.stderr}`.trim();
      return /^aws-cli\/2\./.test(v) ? undefined : `${path} is ${v.split(' ')[0] || 'not runnable'}`;
    },
  },
  python3Boto3: {
    command: 'python3',
    what: 'python3 with boto3',
    debian: 'python3-boto3',
    check(path) {
      const r = spawnSync(path, ['-c', 'import boto3'], { encoding: 'utf8', timeout: 30_000 });
      return r.status === 0 ? undefined : `${path} cannot import boto3`;
    },
  },
} satisfies Record<string, ToolSpec>;

const found = new Map<string, string>();

/** The absolute path of the first `tool` on PATH that passes its check; throws naming what is missing. */
export function findTool(tool: keyof typeof TOOLS): string {
  const cached = found.get(tool);
  if (cached) return cached;
  const spec: ToolSpec = TOOLS[tool];
  const rejected: string[] = [];
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const path = join(dir, spec.command);
    try {
      accessSync(path, constants.X_OK);
    } catch {
      continue;
    }
    const why = spec.check(path);
    if (why === undefined) {
      found.set(tool, path);
      return path;
    }
    rejected.push(why);
  }
  throw new Error(
    `${spec.what} is missing: no '${spec.command}' on PATH passes` +
      (rejected.length > 0 ? ` (${rejected.join('; ')})` : '') +
      `. Install the Debian package ${spec.debian} (scripts/setup-test-deps.sh does, as root).`,
  );
}
