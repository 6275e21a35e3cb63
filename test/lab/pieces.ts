// The guest's pieces, from Debian's own packages pinned by version: the kernel (unpacked with dpkg-deb,
// never installed), busybox-static for the initramfs, and the modules the lab needs, resolved from the
// kernel's own .modinfo. Everything is cached under ~/.cache/cloister-lab/<versions>/, so a second run
// downloads nothing. QEMU itself is a Debian package installed by the test setup (scripts/setup-test-deps.sh
// or .ci/run); the lab only checks it is there.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { resolveModules } from './modules.ts';

/** Pinned Debian bookworm packages (bump together with docs/lab.md). */
export const KERNEL = { pkg: 'linux-image-6.1.0-50-amd64', version: '6.1.176-1', release: '6.1.0-50-amd64' };
export const BUSYBOX = { pkg: 'busybox-static', version: '1:1.35.0-4+deb12u1+b1' };
/** Installed, not downloaded: the lab needs its firmware files and libraries too. */
export const QEMU = { pkg: 'qemu-system-x86', command: 'qemu-system-x86_64' };

/**
 * Modules loaded in the guest, in this order after their dependencies: virtio PCI and 9p for the shared
 * directories, AF_VSOCK with the loopback transport (CID 1), and the virtio transport for a vsock device;
 * legacy iptables' nat table with REDIRECT and the tcp/udp match for transparent egress (crc32c first:
 * libcrc32c, which conntrack needs, names it only as a softdep, and the guest has no modprobe).
 */
export const GUEST_MODULES = [
  'virtio_pci',
  '9pnet_virtio',
  '9p',
  'vsock_loopback',
  'vmw_vsock_virtio_transport',
  'crc32c_generic',
  'xt_tcpudp',
  'xt_REDIRECT',
  'iptable_nat',
];

export interface GuestPieces {
  kernel: string;
  busybox: string;
  /** Module paths in load order. */
  modules: { name: string; path: string }[];
  qemu: string;
}

export function cacheRoot(): string {
  return (
    process.env.CLOISTER_LAB_CACHE ??
    join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'cloister-lab')
  );
}

function safe(v: string): string {
  return v.replace(/[^A-Za-z0-9.+-]/g, '_');
}

/** `apt-get download pkg=version` into `dir` (once), returning the .deb's path. */
function download(pkg: string, version: string, dir: string): string {
  mkdirSync(dir, { recursive: true });
  const found = () => readdirSync(dir).find((f) => f.startsWith(`${pkg}_`) && f.endsWith('.deb'));
  let deb = found();
  if (!deb) {
    const r = spawnSync('apt-get', ['download', `${pkg}=${version}`], { cwd: dir, encoding: 'utf8' });
    deb = found();
    if (r.status !== 0 || !deb)
      throw new Error(
        `apt-get download ${pkg}=${version} failed (${r.error?.message ?? r.stderr.trim()}). ` +
          `Run apt-get update; if Debian dropped this version, pin the current one in test/lab/pieces.ts ` +
          `(apt-cache policy ${pkg}).`,
      );
  }
  return join(dir, deb);
}

function which(cmd: string): string | null {
  const r = spawnSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : null;
}

export function guestPieces(): GuestPieces {
  const qemu = which(QEMU.command);
  if (!qemu)
    throw new Error(
      `${QEMU.command} is missing: install the Debian package ${QEMU.pkg} ` +
        `(apt-get install --no-install-recommends ${QEMU.pkg}; scripts/setup-test-deps.sh does it)`,
    );
  const root = cacheRoot();
  const dir = join(root, `${safe(KERNEL.version)}_${safe(BUSYBOX.version)}_${safe(GUEST_MODULES.join(','))}`);
  const done = join(dir, 'modules.order');
  if (!existsSync(done)) {
    const debs = join(root, 'debs');
    const kernelDeb = download(KERNEL.pkg, KERNEL.version, debs);
    const busyboxDeb = download(BUSYBOX.pkg, BUSYBOX.version, debs);
    const tmp = mkdtempSync(join(root, 'unpack-'));
    try {
      execFileSync('dpkg-deb', ['-x', kernelDeb, join(tmp, 'kernel')]);
      execFileSync('dpkg-deb', ['-x', busyboxDeb, join(tmp, 'busybox')]);
      const out = join(tmp, 'out');
      mkdirSync(join(out, 'modules'), { recursive: true });
      copyFileSync(join(tmp, 'kernel', 'boot', `vmlinuz-${KERNEL.release}`), join(out, 'vmlinuz'));
      copyFileSync(join(tmp, 'busybox', 'bin', 'busybox'), join(out, 'busybox'));
      const mods = resolveModules(join(tmp, 'kernel', 'lib', 'modules', KERNEL.release), GUEST_MODULES);
      for (const m of mods) copyFileSync(m.path, join(out, 'modules', `${m.name}.ko`));
      writeFileSync(join(out, 'modules.order'), `${mods.map((m) => m.name).join('\n')}\n`);
      rmSync(dir, { recursive: true, force: true });
      renameSync(out, dir);
    } finally {
      rmSync(tmp, { recursive: true, force: true });
    }
  }
  const names = readFileSync(done, 'utf8').split('\n').filter(Boolean);
  return {
    kernel: join(dir, 'vmlinuz'),
    busybox: join(dir, 'busybox'),
    modules: names.map((name) => ({ name, path: join(dir, 'modules', `${name}.ko`) })),
    qemu,
  };
}
