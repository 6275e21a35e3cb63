// Runs the test tiers with node's own test runner (tsx strips the types).
//
// Usage: node scripts/run-tests.mjs [--tier=unit,e2e | --skip-tier=unit,e2e] [filter-substring...]
//   no argument: every tier but the opt-in ones, in the order of TIERS below
//   --tier=...: only those tiers; --skip-tier=...: the usual ones but those; filters: only test files whose
//   path contains one of them
//
// A tier is a top-level folder of test/ with one row in TIERS. To add one (issue 12's lab, issue 13's
// interop...), create test/<name>/ and add its row; a folder without a row is an error, so no test is
// left out silently. test/helpers/ holds shared harnesses and fixtures, test/vectors/ public test
// vectors (provenance in its README); neither holds tests.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';

/**
 * concurrency: test files run at once ('cores' = one per CPU, at least 2).
 * dist: the tier runs dist/cli.js, so dist/ is rebuilt first (esbuild, about a second).
 * root: why the tier needs root, or null. As non-root such a tier is reported as not run, and the run fails.
 * binary: the tier runs build/cloister-linux-x64, so it is rebuilt first (reproducible; ~20 s, cached runtime).
 * optIn: runs only when named (--tier=lab / npm run test:lab), not in a plain `npm test`; CI runs it once.
 */
const TIERS = [
  { name: 'unit', concurrency: 'cores', dist: false, root: null },
  {
    name: 'e2e',
    concurrency: 1,
    dist: true,
    root: 'network namespaces (unshare -n), apps run as another uid, CAP_SYS_ADMIN for entropy and PID namespaces',
  },
  {
    name: 'package',
    concurrency: 1,
    dist: true,
    root: 'the single executable runs `cloister dev` and the example app in network namespaces (unshare -n)',
  },
  {
    // Go, Rust and PyPI programs (test/interop/README.md): the first run builds them into
    // ~/.cache/cloister-interop; the Go and boto3 apps run inside `cloister enclave`.
    name: 'interop',
    concurrency: 1,
    dist: true,
    root: 'the Go and boto3 apps run under `cloister enclave` in network namespaces (unshare -n)',
  },
  {
    // The kernel lab (docs/lab.md): one QEMU boot (TCG) of Debian's kernel runs every scenario with the
    // single executable as PID 1 over real AF_VSOCK. Minutes, and the same on any host Node: opt-in.
    name: 'lab',
    concurrency: 1,
    dist: false,
    binary: true,
    optIn: true,
    root: 'apt-get download of the pinned kernel, and QEMU shares / over 9p for the guest to read as root',
  },
];

const NOT_TIERS = new Set(['helpers', 'vectors']);

function collect(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...collect(p));
    else if (name.endsWith('.test.ts')) out.push(p);
  }
  return out;
}

function fail(msg) {
  console.error(`run-tests: ${msg}`);
  process.exit(1);
}

const args = process.argv.slice(2);
const tierArg = args.find((a) => a.startsWith('--tier='));
const skipArg = args.find((a) => a.startsWith('--skip-tier='));
const filters = args.filter((a) => !a.startsWith('--'));
const unknownFlag = args.find((a) => a.startsWith('--') && a !== tierArg && a !== skipArg);
if (unknownFlag)
  fail(
    `unknown option ${unknownFlag} (usage: run-tests.mjs [--tier=unit,e2e | --skip-tier=unit] [filter...])`,
  );

for (const name of readdirSync('test')) {
  if (!statSync(join('test', name)).isDirectory() || NOT_TIERS.has(name)) continue;
  if (!TIERS.some((t) => t.name === name))
    fail(`test/${name}/ is not a tier: add a row to TIERS in scripts/run-tests.mjs`);
}
const loose = readdirSync('test').filter((n) => n.endsWith('.test.ts'));
if (loose.length > 0)
  fail(`tests outside a tier folder: ${loose.join(', ')} (see docs/testing.md for the layout)`);

/** The tiers named in `--tier=a,b` or `--skip-tier=a,b`; an unknown name is an error. */
function named(arg) {
  const names = arg.slice(arg.indexOf('=') + 1).split(',');
  for (const n of names)
    if (!TIERS.some((t) => t.name === n))
      fail(`unknown tier '${n}' (tiers: ${TIERS.map((t) => t.name).join(', ')})`);
  return names;
}
let tiers = tierArg ? TIERS.filter((t) => named(tierArg).includes(t.name)) : TIERS.filter((t) => !t.optIn);
if (skipArg) tiers = tiers.filter((t) => !named(skipArg).includes(t.name));

const plan = tiers
  .map((tier) => ({
    tier,
    files: (existsSync(join('test', tier.name)) ? collect(join('test', tier.name)) : [])
      .filter((f) => filters.length === 0 || filters.some((x) => f.includes(x)))
      .sort(),
  }))
  .filter((p) => p.files.length > 0);
if (plan.length === 0) fail('no test files matched');

const isRoot = process.getuid?.() === 0;

// The tools the tests drive (aws CLI, boto3, curl...): installed via apt as root, reported by name otherwise.
// If some cannot be had, the run goes on: the tests that need them fail saying which tool is missing.
const setup = spawnSync('bash', ['scripts/setup-test-deps.sh', ...(isRoot ? [] : ['--check'])], {
  stdio: 'inherit',
});
if (setup.status !== 0)
  console.error('run-tests: going on; the tests that need what is missing will fail naming it');
// The native addon is built by `npm install` / `npm ci`; after a pull that changed native/, rebuild it
// here, or the tests would load the old one.
const ADDON = 'native/build/Release/cloister_native.node';
const newest = (p) =>
  statSync(p).isDirectory()
    ? Math.max(0, ...readdirSync(p).map((n) => newest(join(p, n))))
    : statSync(p).mtimeMs;
if (
  !existsSync(ADDON) ||
  Math.max(newest('native/src'), newest('native/binding.gyp')) > statSync(ADDON).mtimeMs
) {
  console.log(`run-tests: ${ADDON} is missing or older than native/src: rebuilding it`);
  const r = spawnSync('npm', ['run', 'install'], { stdio: 'inherit' });
  if (r.status !== 0) fail('the native addon did not build (npm run install)');
}

const results = [];
let built = false;
for (const { tier, files } of plan) {
  if (tier.root && !isRoot) {
    console.error(`\n== ${tier.name}: NOT RUN (${files.length} files): these tests need root: ${tier.root}.`);
    console.error(
      `   Run as root (sudo -E node scripts/run-tests.mjs --tier=${tier.name}), or run --tier=unit alone.`,
    );
    results.push({ name: tier.name, status: 'not run (needs root)', ms: 0 });
    continue;
  }
  if (tier.binary) {
    const b = spawnSync(process.execPath, ['scripts/build-binary.mjs'], { stdio: 'inherit' });
    if (b.status !== 0) fail('the build of the single executable failed');
  }
  if (tier.dist && !built) {
    // Always rebuild: a stale dist/ would test old code, and the build takes about a second.
    const b = spawnSync(process.execPath, ['scripts/build.mjs'], { stdio: 'inherit' });
    if (b.status !== 0) fail('the build of dist/ failed');
    built = true;
  }
  const concurrency = tier.concurrency === 'cores' ? Math.max(2, availableParallelism()) : tier.concurrency;
  console.log(`\n== ${tier.name}: ${files.length} files, ${concurrency} at a time`);
  const started = Date.now();
  const r = spawnSync(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
    { stdio: 'inherit' },
  );
  results.push({ name: tier.name, status: r.status === 0 ? 'pass' : 'FAIL', ms: Date.now() - started });
}

console.log('\n== tiers');
for (const r of results)
  console.log(`  ${r.name.padEnd(10)} ${r.status.padEnd(22)} ${(r.ms / 1000).toFixed(1)} s`);
process.exit(results.every((r) => r.status === 'pass') ? 0 : 1);
