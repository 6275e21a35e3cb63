// Enclave bootstrap syscalls the supervisor needs and Node lacks (native addon). Errors are thrown
// with `code` = errno name (EPERM, ECHILD...), `errno` and `syscall`.
import { loadNative } from '../native.ts';

/** Sets IFF_UP on `lo` (an enclave, like `unshare -n`, starts with it down); the kernel then adds 127.0.0.1 and ::1. */
export function bringUpLoopback(): void {
  loadNative().bringUpLoopback();
}

/**
 * Mixes `bytes` into the kernel pool. With CAP_SYS_ADMIN they are credited (RNDADDENTROPY, 8 bits per
 * byte), which unblocks getrandom() early in boot; without it they are written uncredited.
 */
export function seedEntropy(bytes: Uint8Array): { credited: boolean } {
  return loadNative().seedEntropy(bytes);
}

/** prctl(PR_SET_CHILD_SUBREAPER): orphaned descendants are re-parented to this process. */
export function setChildSubreaper(): void {
  loadNative().setChildSubreaper();
}

/**
 * waitpid(pid, WNOHANG): the raw wait status once `pid` has exited (and is reaped), null while it
 * runs. Throws ECHILD if `pid` is not a child of this process. Only one pid at a time, never -1, so
 * the statuses of children Node's child_process is waiting for are not stolen.
 */
export function reapZombie(pid: number): number | null {
  return loadNative().reapZombie(pid);
}

/** Decodes a raw wait status as returned by reapZombie. */
export function decodeWaitStatus(status: number): { code: number | null; signal: number | null } {
  const sig = status & 0x7f;
  if (sig === 0) return { code: (status >> 8) & 0xff, signal: null };
  if (sig !== 0x7f) return { code: null, signal: sig };
  return { code: null, signal: null }; // stopped; not reported with WNOHANG without WUNTRACED
}
