// Dockerfile.enclave cannot be built here (no Docker engine), so what can be checked without one is:
// it builds with scripts that exist and that CI runs, on the runtime version the build script pins, from
// files that exist and that .dockerignore does not hide, and its entrypoint is odyn's command line for
// `cloister enclave`, which the supervisor's parser accepts.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { parseEnclaveArgs } from '../../src/supervisor/args.ts';
import { NODE_VERSION, REPO } from '../helpers/build-outputs.ts';

const repo = REPO;
const dockerfile = readFileSync(join(repo, 'Dockerfile.enclave'), 'utf8');
// Instructions with their continuation lines joined, comments dropped.
const instructions = dockerfile
  .replace(/\\\n/g, ' ')
  .split('\n')
  .map((l) => l.trim())
  .filter((l) => l !== '' && !l.startsWith('#'));
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  scripts: Record<string, string>;
};

test('Dockerfile.enclave builds with npm scripts that exist, on the pinned Node', () => {
  const runs = instructions.filter((l) => l.startsWith('RUN '));
  const scripts = runs.flatMap((l) => [...l.matchAll(/npm run ([\w:-]+)/g)].map((m) => m[1]!));
  assert.ok(scripts.includes('build:binary'), 'the binary is built with `npm run build:binary`');
  for (const s of scripts) assert.ok(pkg.scripts[s], `package.json has the script "${s}"`);
  assert.ok(
    runs.some((l) => /npm ci\b/.test(l)),
    'dependencies are installed with `npm ci` (exactly the lockfile), as in .ci/run',
  );
  const version = NODE_VERSION;
  const froms = instructions.filter((l) => /^FROM node:/.test(l) || /^ARG APP_IMAGE=node:/.test(l));
  assert.ok(froms.length > 0);
  for (const f of froms) assert.match(f, new RegExp(`node:${version.replace(/\./g, '\\.')}-`), f);
});

test('every file Dockerfile.enclave copies from the context exists and is not dockerignored', () => {
  const ignored = readFileSync(join(repo, '.dockerignore'), 'utf8')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
  const args = new Map<string, string>();
  for (const l of instructions) {
    const m = /^ARG (\w+)=(\S+)$/.exec(l);
    if (m) args.set(m[1]!, m[2]!);
  }
  const copies = instructions.filter((l) => l.startsWith('COPY ') && !l.includes('--from='));
  assert.ok(copies.length > 0);
  for (const c of copies) {
    const parts = c.split(/\s+/).slice(1);
    for (const raw of parts.slice(0, -1)) {
      const src = raw.replace(/\$\{(\w+)\}/g, (_, name: string) => args.get(name) ?? '').replace(/\/$/, '');
      if (src === '.') continue;
      assert.ok(existsSync(join(repo, src)), `${c}: ${src} exists`);
      const top = src.split('/')[0]!;
      assert.ok(!ignored.includes(top) && !ignored.includes(src), `${c}: ${src} is not in .dockerignore`);
    }
  }
});

test("the image's entrypoint is `cloister enclave --config-dir /etc/enclaver --`, which the supervisor accepts", () => {
  const entry = instructions
    .filter((l) => l.startsWith('ENTRYPOINT '))
    .map((l) => JSON.parse(l.slice(11)) as string[]);
  assert.deepEqual(entry, [['/usr/local/bin/cloister', 'enclave', '--config-dir', '/etc/enclaver', '--']]);
  assert.ok(
    instructions.some((l) => /^COPY \$\{MANIFEST\} \/etc\/enclaver\/enclaver\.yaml$/.test(l)),
    'the manifest lands in the config dir',
  );
  assert.ok(
    instructions.includes('COPY --from=build /out/cloister /usr/local/bin/odyn'),
    "the odyn stage puts the binary where Enclaver's build takes it from",
  );
  // The same argv through the supervisor's own parser: odyn's flags, the config dir, the app after `--`.
  const cmd = JSON.parse(instructions.find((l) => l.startsWith('CMD '))!.slice(4)) as string[];
  const args = parseEnclaveArgs([...entry[0]!.slice(2), ...cmd]);
  assert.equal(args.configDir, '/etc/enclaver');
  assert.deepEqual(args.app, cmd);
  assert.equal(args.bootstrap, true);
  assert.equal(args.transport, undefined, 'the real vsock transport, not an emulation');
});
