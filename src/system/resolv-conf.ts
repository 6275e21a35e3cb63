// Points the app's resolver at the DNS stub (transparent egress) and puts things back on exit.
//   - writable /etc/resolv.conf (an enclave's initramfs): rewritten in place (a symlink is followed, as any
//     resolver would read it); its old content, or its absence, is restored at exit;
//   - read-only (EROFS, EACCES, EPERM): the stub's file is written to the RAM directory (ram-dir.ts) and
//     bind-mounted over it; unmounted at exit. The image's file is never touched.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { TransparentSetupError } from '../errors.ts';
import { loadNative } from '../native.ts';

export const RESOLV_CONF = '/etc/resolv.conf';

/** One nameserver, no search list (names are asked as written), short retries: the stub answers at once. */
export const STUB_RESOLV_CONF = 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n';

const READ_ONLY = new Set(['EROFS', 'EACCES', 'EPERM']);

export interface ResolvConfOptions {
  path?: string;
  /** Writes a file in the RAM directory (readable by the app) and returns its path. */
  ramFile?: (name: string, content: string) => Promise<string>;
}

/** Returns what undoes it. Throws TransparentSetupError when neither way works. */
export async function pointResolvConfAtStub(opts: ResolvConfOptions = {}): Promise<() => void> {
  const path = opts.path ?? RESOLV_CONF;
  let before: string | null;
  try {
    before = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT')
      throw new TransparentSetupError(`cannot read ${path}: ${(e as Error).message}`, { cause: e });
    before = null;
  }
  try {
    writeFileSync(path, STUB_RESOLV_CONF);
    return () => {
      if (before === null) rmSync(path, { force: true });
      else writeFileSync(path, before);
    };
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code ?? '';
    if (!READ_ONLY.has(code) || !opts.ramFile || before === null)
      throw new TransparentSetupError(
        `cannot point ${path} at the DNS stub: ${(e as Error).message} ` +
          '(make it writable in the image, or have the app use 127.0.0.1 as its DNS server)',
        { cause: e },
      );
  }
  const native = loadNative();
  try {
    const file = await opts.ramFile('resolv.conf', STUB_RESOLV_CONF);
    native.bindMount(file, path);
  } catch (e) {
    throw new TransparentSetupError(
      `${path} is read-only and a RAM copy could not be mounted over it: ${(e as Error).message}`,
      { cause: e },
    );
  }
  return () => native.unmount(path);
}
