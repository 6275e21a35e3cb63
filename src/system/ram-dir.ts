// The RAM directory: where cloister writes files the app must read but that must never reach a disk
// (boot-time secrets, the attested TLS key and certificate). One module decides where it is and how
// files land in it:
//
//  - in the enclave (cloister runs as root), a tmpfs of its own is mounted there (nosuid, nodev,
//    noexec, size-limited, `noswap` where the kernel knows it): nothing below it is in the image, and
//    unmounting it at exit drops every page;
//  - in dev mode and unprivileged runs, an existing RAM file system is used as it is (a fresh directory
//    under /dev/shm or $XDG_RUNTIME_DIR), removed again at close.
// Either way the directory must be on tmpfs or ramfs (statfs): a disk is refused by name, never used.
//
// Files are written whole and then renamed into place (a reader never sees half a key), created 0600
// for cloister and then given their owner (the app's uid/gid) and mode (default 0400) before the rename.
// Directories are 0711: the app can open the files it is told about, not list what else is there.
import { randomBytes } from 'node:crypto';
import { constants as fsc } from 'node:fs';
import { chmod, mkdir, mkdtemp, open, rename, rm, statfs, unlink } from 'node:fs/promises';
import { dirname, isAbsolute, join, normalize, sep } from 'node:path';
import { loadNative } from '../native.ts';

/** statfs f_type of the RAM file systems (linux/magic.h). */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** The tmpfs size when none is given: boot secrets and TLS keys are kilobytes. */
export const DEFAULT_RAM_DIR_BYTES = 16 * 1024 * 1024;

export interface RamDirOptions {
  /**
   * The directory (with `mount`, the mount point; created if missing). null: a fresh private directory
   * under /dev/shm or $XDG_RUNTIME_DIR (makeDevRamPath), removed entirely at close (dev mode).
   */
  path: string | null;
  /**
   * `auto`: mount a tmpfs at `path` when running as root (euid 0), else use `path` as it is.
   * `never`: use `path` as it is (dev mode). Either way it must then be on tmpfs or ramfs.
   */
  mount: 'auto' | 'never';
  /** tmpfs size limit in bytes (default DEFAULT_RAM_DIR_BYTES). */
  sizeBytes?: number;
}

export interface RamFileOptions {
  /** File mode (default 0o400). */
  mode?: number;
  /** Owner uid/gid (null or absent: cloister's own). */
  uid?: number | null;
  gid?: number | null;
}

export class RamDirError extends Error {
  override name = 'RamDirError';
}

function fsName(type: number | bigint): 'tmpfs' | 'ramfs' | null {
  const t = Number(type);
  if (t === TMPFS_MAGIC) return 'tmpfs';
  if (t === RAMFS_MAGIC) return 'ramfs';
  return null;
}

/** mkdir -p with every directory it creates 0711 whatever the umask; existing ones are left alone. */
async function makeDirs(path: string): Promise<void> {
  const first = await mkdir(path, { recursive: true, mode: 0o711 });
  if (first === undefined) return;
  for (let d = path; ; d = dirname(d)) {
    await chmod(d, 0o711);
    if (d === first || d === dirname(d)) return;
  }
}

/** Whether `path` is on a RAM file system (tmpfs or ramfs), and which. */
export async function ramFsOf(path: string): Promise<'tmpfs' | 'ramfs' | null> {
  return fsName((await statfs(path)).type);
}

/**
 * A fresh private directory on a RAM file system for an unprivileged or dev-mode run: under /dev/shm,
 * else $XDG_RUNTIME_DIR. Throws when neither is a RAM file system.
 */
export async function makeDevRamPath(prefix = 'cloister-'): Promise<string> {
  const bases = ['/dev/shm', process.env.XDG_RUNTIME_DIR].filter((b): b is string => !!b);
  for (const base of bases) {
    try {
      if ((await ramFsOf(base)) === null) continue;
      return await mkdtemp(join(base, prefix));
    } catch {
      // Not there or not writable: try the next.
    }
  }
  throw new RamDirError(
    `no RAM file system to keep files in: neither ${bases.join(' nor ')} is a writable tmpfs (set ram_dir.path to one)`,
  );
}

/** A directory on a RAM file system, opened by RamDir.open. */
export class RamDir {
  private readonly written = new Set<string>();
  private closed = false;

  private constructor(
    /** Absolute path of the directory. */
    readonly path: string,
    /** Which RAM file system it is on. */
    readonly fs: 'tmpfs' | 'ramfs',
    /** Whether cloister mounted it (and unmounts it at close). */
    readonly mounted: boolean,
    /** Whether the mount has `noswap` (the kernel knows the option, 6.4+); false when not mounted. */
    readonly noswap: boolean,
    private readonly owned: boolean,
  ) {}

  static async open(opts: RamDirOptions): Promise<RamDir> {
    if (opts.path === null) {
      const path = await makeDevRamPath();
      await chmod(path, 0o711);
      const fs = await ramFsOf(path);
      if (fs === null) throw new RamDirError(`${path} is not on a RAM file system`);
      return new RamDir(path, fs, false, false, true);
    }
    if (!isAbsolute(opts.path)) throw new RamDirError(`RAM directory ${opts.path} must be an absolute path`);
    const path = normalize(opts.path);
    let mounted = false;
    let noswap = false;
    try {
      await makeDirs(path);
    } catch (err) {
      throw new RamDirError(`cannot create the RAM directory ${path}: ${(err as Error).message}`);
    }
    if (opts.mount === 'auto' && process.geteuid?.() === 0) {
      const size = opts.sizeBytes ?? DEFAULT_RAM_DIR_BYTES;
      const base = `size=${size},mode=0711,uid=0,gid=0`;
      const native = loadNative();
      try {
        native.mountTmpfs(path, `${base},noswap`);
        noswap = true;
      } catch (err) {
        // EINVAL: a kernel older than 6.4 does not know noswap (an enclave has no swap anyway).
        if ((err as NodeJS.ErrnoException).code !== 'EINVAL') {
          throw new RamDirError(`cannot mount a tmpfs at ${path}: ${(err as Error).message}`);
        }
        try {
          native.mountTmpfs(path, base);
        } catch (err2) {
          throw new RamDirError(`cannot mount a tmpfs at ${path}: ${(err2 as Error).message}`);
        }
      }
      mounted = true;
    }
    const fs = await ramFsOf(path);
    if (fs === null) {
      if (mounted) loadNative().unmount(path);
      throw new RamDirError(
        `${path} is not on a RAM file system (tmpfs or ramfs): refusing to write secrets there`,
      );
    }
    return new RamDir(path, fs, mounted, noswap, false);
  }

  /** Absolute path of `rel` inside the directory; refuses absolute paths and `..`. */
  resolve(rel: string): string {
    const n = normalize(rel);
    if (
      rel === '' ||
      isAbsolute(rel) ||
      n === '..' ||
      n.startsWith(`..${sep}`) ||
      n === '.' ||
      rel.includes('\0')
    ) {
      throw new RamDirError(`"${rel}" is not a file name inside the RAM directory`);
    }
    return join(this.path, n);
  }

  /**
   * Writes `data` to `rel` (parent directories made 0711), owned by uid/gid with `mode` (default 0400),
   * replacing any previous file atomically. Returns the absolute path.
   */
  async writeFile(rel: string, data: Uint8Array, opts: RamFileOptions = {}): Promise<string> {
    if (this.closed) throw new RamDirError('the RAM directory is closed');
    const target = this.resolve(rel);
    const parent = dirname(target);
    await makeDirs(parent);
    const tmp = join(parent, `.${randomBytes(6).toString('hex')}.tmp`);
    const fh = await open(tmp, fsc.O_WRONLY | fsc.O_CREAT | fsc.O_EXCL | fsc.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(data);
      const uid = opts.uid ?? -1;
      const gid = opts.gid ?? -1;
      if (uid !== -1 || gid !== -1) await fh.chown(uid, gid);
      // After chown: chown clears set-id bits, and the umask must not decide the mode.
      await fh.chmod(opts.mode ?? 0o400);
    } catch (err) {
      await fh.close().catch(() => {});
      await unlink(tmp).catch(() => {});
      throw err;
    }
    await fh.close();
    await rename(tmp, target);
    this.written.add(target);
    return target;
  }

  /** Removes what was written (and the directory if owned); unmounts a tmpfs cloister mounted. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.mounted) {
      try {
        loadNative().unmount(this.path);
        return;
      } catch {
        // Busy or gone: fall through and remove the files at least.
      }
    }
    for (const f of this.written) await rm(f, { force: true }).catch(() => {});
    if (this.owned) await rm(this.path, { recursive: true, force: true }).catch(() => {});
  }
}

/**
 * The RAM directory opened on first use: nothing is mounted or created unless something is written
 * (a supervisor without boot secrets or attested TLS leaves the file system alone).
 */
export class LazyRamDir {
  private opening: Promise<RamDir> | null = null;

  constructor(private readonly opts: RamDirOptions) {}

  get(): Promise<RamDir> {
    this.opening ??= RamDir.open(this.opts);
    return this.opening;
  }

  /** Whether it was ever opened. */
  get opened(): boolean {
    return this.opening !== null;
  }

  async close(): Promise<void> {
    if (!this.opening) return;
    const dir = await this.opening.catch(() => null);
    await dir?.close();
  }
}
