// Boots the lab guest once: QEMU under software emulation (TCG; this machine's /dev/kvm cannot run
// guests), Debian's kernel, an initramfs of busybox + modules + guest/init.sh, the host's root shared
// read-only over 9p and a results directory shared read-write. The guest powers off when PID 1 exits
// (panic=-1 with -no-reboot); a guest still running at the deadline is killed, never waited on for ever.
import { spawn } from 'node:child_process';
import { createWriteStream, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CpioEntry, cpioArchive } from './cpio.ts';
import type { GuestPieces } from './pieces.ts';

export interface BootOptions {
  pieces: GuestPieces;
  /** Shared read-write as /tmp/lab in the guest. */
  resultsDir: string;
  /** The console goes here as it arrives. */
  consoleFile: string;
  deadlineMs: number;
  /** Guest RAM in MiB and vCPUs: small, the machine is shared. */
  memoryMb?: number;
  cpus?: number;
  /** Extra QEMU arguments (a vhost-user-vsock device, say). */
  extraArgs?: string[];
}

export interface BootResult {
  /** null when the deadline killed it. */
  exitCode: number | null;
  timedOut: boolean;
  ms: number;
  console: string;
}

export function buildInitramfs(pieces: GuestPieces, out: string): void {
  const here = import.meta.dirname;
  const entries: CpioEntry[] = [
    ...['bin', 'dev', 'proc', 'sys', 'host', 'lib', 'lib/modules'].map((path) => ({
      path,
      kind: 'dir' as const,
    })),
    { path: 'bin/busybox', kind: 'file', mode: 0o755, data: readFileSync(pieces.busybox) },
    { path: 'bin/sh', kind: 'symlink', data: Buffer.from('busybox') },
    { path: 'init', kind: 'file', mode: 0o755, data: readFileSync(join(here, 'guest', 'init.sh')) },
    {
      path: 'modules.order',
      kind: 'file',
      data: Buffer.from(pieces.modules.map((m) => `${m.name}\n`).join('')),
    },
    ...pieces.modules.map((m) => ({
      path: `lib/modules/${m.name}.ko`,
      kind: 'file' as const,
      data: readFileSync(m.path),
    })),
  ];
  writeFileSync(out, cpioArchive(entries));
}

export function boot(o: BootOptions, initramfs: string): Promise<BootResult> {
  const args = [
    ...['-M', 'q35', '-accel', 'tcg', '-cpu', 'max', '-nodefaults', '-no-user-config'],
    ...['-m', String(o.memoryMb ?? 2048), '-smp', String(o.cpus ?? 2)],
    ...['-display', 'none', '-serial', 'stdio', '-no-reboot'],
    ...['-kernel', o.pieces.kernel, '-initrd', initramfs],
    ...['-append', 'console=ttyS0 panic=-1 quiet random.trust_cpu=on'],
    ...['-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap'],
    ...['-virtfs', `local,path=${o.resultsDir},mount_tag=results,security_model=none`],
    ...(o.extraArgs ?? []),
  ];
  const started = Date.now();
  const qemu = spawn(o.pieces.qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const file = createWriteStream(o.consoleFile);
  let text = '';
  for (const s of [qemu.stdout, qemu.stderr]) {
    s.on('data', (c: Buffer) => {
      file.write(c);
      text += c.toString('latin1');
      if (text.length > 4 << 20) text = text.slice(-(2 << 20));
    });
  }
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    qemu.kill('SIGKILL');
  }, o.deadlineMs);
  return new Promise((resolve, reject) => {
    qemu.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    qemu.on('close', (code) => {
      clearTimeout(timer);
      file.end();
      resolve({ exitCode: code, timedOut, ms: Date.now() - started, console: text });
    });
  });
}
