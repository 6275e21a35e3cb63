// Where the attested key, certificate and chain go for an app that terminates TLS itself (Vault's
// listener tls_cert_file / tls_key_file). The issuer only needs "write this file there, atomically,
// readable by the app"; which filesystem backs the directory (a RAM filesystem) is decided by whoever
// creates the writer.
import { randomUUID } from 'node:crypto';
import { chownSync, closeSync, fsyncSync, mkdirSync, openSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface AppFileWriter {
  /** The directory the files are in (what the app is told). */
  readonly dir: string;
  /** Replace `name` atomically (a reader sees the old or the new content, never a mix) with `mode`. */
  write(name: string, data: string | Uint8Array, mode: number): void;
}

export interface Owner {
  uid: number | null;
  gid: number | null;
}

/**
 * Files in `dir`, owned by `owner` (the app's uid/gid; null keeps cloister's). The directory is created
 * 0750 if missing. Each write goes to a temporary name in the same directory, is flushed, then renamed.
 */
export function directoryWriter(dir: string, owner: Owner): AppFileWriter {
  mkdirSync(dir, { recursive: true, mode: 0o750 });
  const chown = (path: string) => {
    if (owner.uid !== null || owner.gid !== null) chownSync(path, owner.uid ?? -1, owner.gid ?? -1);
  };
  chown(dir);
  return {
    dir,
    write(name, data, mode) {
      const path = join(dir, name);
      const tmp = join(dir, `.${name}.${randomUUID()}.tmp`);
      const fd = openSync(tmp, 'wx', mode);
      try {
        writeFileSync(fd, data);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      chown(tmp);
      renameSync(tmp, path);
    },
  };
}
