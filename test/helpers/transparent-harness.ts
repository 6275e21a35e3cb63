// Transparent egress end to end, as root, in network namespaces this harness makes:
//
//   [netns + mount ns: cloister enclave (transparent mode) + the app's clients, /etc/resolv.conf a bind mount]
//        --emulated vsock (a Unix-socket directory)-->
//   [netns: host relay + HTTPS servers, DoH server, fake IMDS on lo addresses] (transparent-upstreams.ts)
//
// Nothing the relay dials can leave the machine: its namespace has only lo.
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import type { TestContext } from 'node:test';
import { tempDir } from './egress-fixture.ts';

const ROOT = join(import.meta.dirname, '../..');
const FIXTURES = join(import.meta.dirname, 'fixtures');
export const CLI = join(ROOT, 'dist', 'cli.js');

/** Throws naming what is missing unless `tool args` runs. */
export function requireTool(tool: string, args: string[], what: string): void {
  const r = spawnSync(tool, args, { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(`this test needs ${what} ('${tool}'): ${r.error?.message ?? r.stderr.trim()}`);
}

/** The static Go client (CGO_ENABLED=0), built once into the interop cache (go's build cache does the rest). */
export function goClient(): string {
  requireTool('go', ['version'], 'the Go toolchain (scripts/setup-test-deps.sh installs it)');
  const cache = process.env.CLOISTER_INTEROP_CACHE ?? join(homedir(), '.cache', 'cloister-interop');
  mkdirSync(cache, { recursive: true });
  const out = join(cache, 'transparent-go');
  const r = spawnSync('go', ['build', '-trimpath', '-o', out, '.'], {
    cwd: join(FIXTURES, 'transparent-go'),
    env: { ...process.env, CGO_ENABLED: '0' },
    encoding: 'utf8',
    timeout: 10 * 60_000,
  });
  if (r.status !== 0) throw new Error(`go build of the transparent client failed: ${r.stderr}`);
  return out;
}

export interface Upstreams {
  vsockDir: string;
  /** CA (the servers' self-signed certificate) the clients trust. */
  caFile: string;
  /** Lines the upstreams printed (relay-resolve, doh-query, imds). */
  lines: string[];
}

/** The relay and the servers in a network namespace of their own. */
export async function startUpstreams(t: TestContext): Promise<Upstreams> {
  const vsockDir = tempDir(t, 'cloister-vsock-');
  const certDir = tempDir(t, 'cloister-cert-');
  const child = spawn(
    'unshare',
    [
      '-n',
      process.execPath,
      '--import',
      'tsx',
      join(FIXTURES, 'transparent-upstreams.ts'),
      vsockDir,
      certDir,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  t.after(() => child.kill('SIGTERM'));
  const lines: string[] = [];
  let partial = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the upstreams did not start within 30 s')), 30_000);
    child.once('exit', (code) => reject(new Error(`the upstreams exited with ${code}`)));
    child.stdout.on('data', (d) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const l of parts) {
        lines.push(l);
        if (l === 'ready') {
          clearTimeout(timer);
          resolve();
        }
      }
    });
  });
  return { vsockDir, caFile: join(certDir, 'cert.pem'), lines };
}

export interface EnclaveRun {
  code: number | null;
  /** cloister's stdout (its JSON log lines and the app's output). */
  stdout: string;
  stderr: string;
  /** What the wrapper printed after cloister exited: routes, nat table, resolv.conf. */
  after: string;
  /** Directory the app wrote its results to. */
  outDir: string;
  /** The file bind-mounted as the enclave's /etc/resolv.conf. */
  resolvConf: string;
}

/**
 * Runs `cloister enclave` (transparent mode) in a fresh network and mount namespace with `app` (a shell
 * script; $OUT is a directory for its results, $CA the servers' CA). /etc/resolv.conf is a bind mount of a
 * temporary file there, so cloister rewrites that file and never the machine's. The app must end by
 * `kill -TERM $PPID` (cloister stays up after its app, like odyn).
 */
export async function runTransparentEnclave(
  t: TestContext,
  up: Upstreams,
  manifest: string,
  settings: string,
  app: string,
  opts: { readOnlyResolvConf?: boolean; timeoutMs?: number } = {},
): Promise<EnclaveRun> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const dir = tempDir(t, 'cloister-transparent-');
  const outDir = join(dir, 'out');
  mkdirSync(outDir);
  writeFileSync(join(dir, 'enclaver.yaml'), manifest);
  writeFileSync(join(dir, 'cloister.yaml'), settings);
  writeFileSync(join(dir, 'resolv.conf'), 'nameserver 192.0.2.99\n');
  writeFileSync(join(dir, 'app.sh'), app);
  const wrapper = [
    'set -u',
    `mount --bind ${dir}/resolv.conf /etc/resolv.conf`,
    // An image whose resolv.conf cannot be written: cloister must mount its own over it.
    ...(opts.readOnlyResolvConf ? ['mount -o remount,bind,ro /etc/resolv.conf'] : []),
    `${process.execPath} ${CLI} enclave --config-dir ${dir} --transport emulated --vsock-dir ${up.vsockDir} --cid 16 --no-bootstrap -- sh ${dir}/app.sh`,
    'code=$?',
    'echo "== after: exit $code"',
    'echo "== routes"; ip route show',
    'echo "== nat"; iptables-legacy-save -t nat',
    'echo "== resolv.conf"; cat /etc/resolv.conf',
  ].join('\n');
  const child = spawn('unshare', ['-n', '-m', '--propagation', 'private', 'sh', '-c', wrapper], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // No AWS credentials from this machine's environment: the app's SDK and the KMS proxy must use IMDS.
    env: {
      ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('AWS_'))),
      OUT: outDir,
      CA: up.caFile,
    },
  });
  t.after(() => child.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => {
    stdout += d;
  });
  child.stderr.on('data', (d) => {
    stderr += d;
  });
  const code = await new Promise<number | null>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`the enclave did not finish within ${timeoutMs} ms; stdout: ${stdout.slice(-4000)}`));
    }, timeoutMs);
    child.on('exit', (c) => {
      clearTimeout(timer);
      resolve(c);
    });
  });
  const at = stdout.indexOf('== after:');
  return {
    code,
    stdout: at < 0 ? stdout : stdout.slice(0, at),
    stderr,
    after: at < 0 ? '' : stdout.slice(at),
    outDir,
    resolvConf: join(dir, 'resolv.conf'),
  };
}
