// A "newc" cpio archive (the initramfs format the kernel unpacks, Documentation/driver-api/early-userspace/
// buffer-format.rst): each entry is a 110-byte ASCII header, the NUL-terminated name and the data, each
// padded to 4 bytes. Written here because this machine has no cpio binary; the kernel takes it uncompressed.
export interface CpioEntry {
  path: string;
  /** 'dir', 'file' or 'symlink' (data is the target). */
  kind: 'dir' | 'file' | 'symlink';
  mode?: number;
  data?: Buffer;
}

const TYPE = { dir: 0o040000, file: 0o100000, symlink: 0o120000 } as const;

export function cpioArchive(entries: CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const pad = (n: number) => Buffer.alloc((4 - (n % 4)) % 4);
  const add = (path: string, mode: number, data: Buffer, ino: number) => {
    const name = Buffer.from(`${path}\0`);
    const fields = [ino, mode, 0, 0, 1, 0, data.length, 0, 0, 0, 0, name.length, 0];
    const header = `070701${fields.map((f) => f.toString(16).padStart(8, '0')).join('')}`;
    parts.push(Buffer.from(header), name, pad(110 + name.length), data, pad(data.length));
  };
  entries.forEach((e, i) => {
    const perm = e.mode ?? (e.kind === 'dir' ? 0o755 : e.kind === 'symlink' ? 0o777 : 0o644);
    add(e.path, TYPE[e.kind] | perm, e.data ?? Buffer.alloc(0), i + 1);
  });
  add('TRAILER!!!', 0, Buffer.alloc(0), 0);
  return Buffer.concat(parts);
}
