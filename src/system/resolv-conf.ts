// Points the app's resolver at the DNS stub (transparent egress) and puts the file back on exit.
// The file is rewritten in place (a symlink is followed, as any resolver would read it); its old
// content, or its absence, is restored by the returned function.
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { TransparentSetupError } from '../errors.ts';

export const RESOLV_CONF = '/etc/resolv.conf';

/** One nameserver, no search list (names are asked as written), short retries: the stub answers at once. */
export const STUB_RESOLV_CONF = 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n';

export function pointResolvConfAtStub(path = RESOLV_CONF): () => void {
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
  } catch (e) {
    throw new TransparentSetupError(
      `cannot point ${path} at the DNS stub: ${(e as Error).message} ` +
        '(make it writable in the image, or have the app use 127.0.0.1 as its DNS server)',
      { cause: e },
    );
  }
  return () => {
    if (before === null) rmSync(path, { force: true });
    else writeFileSync(path, before);
  };
}
