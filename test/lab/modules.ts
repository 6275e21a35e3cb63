// Kernel modules for the guest, resolved the way modprobe would: each module's `depends=` field (its
// .modinfo ELF section) names the modules that must be loaded first. Debian's kernel package ships no
// modules.dep (depmod writes it at install time, and the lab never installs the kernel), and this
// machine has no kmod, so the dependency walk is done here.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

/** The `key=value` pairs of a module's .modinfo section (an ELF64 little-endian relocatable file). */
export function modinfo(path: string): Map<string, string> {
  const b = readFileSync(path);
  if (b.readUInt32BE(0) !== 0x7f454c46 || b[4] !== 2 || b[5] !== 1)
    throw new Error(`${path}: not an ELF64 LE file`);
  const shoff = Number(b.readBigUInt64LE(0x28));
  const shentsize = b.readUInt16LE(0x3a);
  const shnum = b.readUInt16LE(0x3c);
  const section = (i: number) => {
    const o = shoff + i * shentsize;
    return {
      name: b.readUInt32LE(o),
      off: Number(b.readBigUInt64LE(o + 0x18)),
      size: Number(b.readBigUInt64LE(o + 0x20)),
    };
  };
  const names = section(b.readUInt16LE(0x3e));
  for (let i = 0; i < shnum; i++) {
    const s = section(i);
    const start = names.off + s.name;
    if (b.toString('latin1', start, b.indexOf(0, start)) !== '.modinfo') continue;
    const out = new Map<string, string>();
    for (const field of b.toString('latin1', s.off, s.off + s.size).split('\0')) {
      const eq = field.indexOf('=');
      if (eq > 0 && !out.has(field.slice(0, eq))) out.set(field.slice(0, eq), field.slice(eq + 1));
    }
    return out;
  }
  throw new Error(`${path}: no .modinfo section`);
}

/** Module name (dashes as underscores, as the kernel spells them) -> path of its .ko under `dir`. */
function indexModules(dir: string, out = new Map<string, string>()): Map<string, string> {
  for (const n of readdirSync(dir)) {
    const p = join(dir, n);
    if (statSync(p).isDirectory()) indexModules(p, out);
    else if (n.endsWith('.ko')) out.set(n.slice(0, -3).replace(/-/g, '_'), p);
  }
  return out;
}

/** `wanted` and everything they depend on, in an order insmod can load them (dependencies first). */
export function resolveModules(modulesDir: string, wanted: string[]): { name: string; path: string }[] {
  const index = indexModules(modulesDir);
  const order: { name: string; path: string }[] = [];
  const seen = new Set<string>();
  const visit = (name: string, chain: string[]) => {
    if (seen.has(name)) return;
    const path = index.get(name);
    if (!path)
      throw new Error(
        `kernel module ${name} not found under ${modulesDir} (needed by ${chain.join(' <- ') || 'the lab'})`,
      );
    seen.add(name);
    for (const dep of (modinfo(path).get('depends') ?? '').split(',').filter(Boolean))
      visit(dep, [name, ...chain]);
    order.push({ name, path });
  };
  for (const w of wanted) visit(w, []);
  return order;
}
