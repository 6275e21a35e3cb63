// Loads the N-API addon built from native/. Looked up beside the bundle, beside the sources, or at
// $CLOISTER_NATIVE (the single-executable build ships the .node file next to the binary).
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** An AF_VSOCK address. */
export interface VsockAddress {
  cid: number;
  port: number;
}

/**
 * The interface version this code expects of the addon: CLOISTER_NATIVE_ABI in native/src/common.h.
 * Bump both together whenever a function is added, removed or changes shape.
 */
export const NATIVE_ABI_VERSION = 6;

/**
 * The addon's functions (native/src/*.c, one unit per concern). Failed syscalls throw (or reject with)
 * an Error whose `code` is the errno name (ECONNREFUSED, EMSGSIZE...), plus `errno` and `syscall`.
 * Every function is present: loadNative() refuses an addon of another ABI version once, at load.
 */
export interface NativeAddon {
  readonly abiVersion: number;
  /** socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC) -> fd. */
  vsockSocket(): number;
  vsockBind(fd: number, cid: number, port: number): void;
  vsockListen(fd: number, backlog: number): void;
  /**
   * Non-blocking connect, waited for on the loop's poller (no thread-pool thread is held); resolves with
   * a connected non-blocking fd. ETIMEDOUT after timeoutMs (<0: only the kernel's own limit).
   */
  vsockConnect(cid: number, port: number, timeoutMs: number): Promise<number>;
  vsockLocalAddress(fd: number): VsockAddress;
  vsockRemoteAddress(fd: number): VsockAddress;
  closeFd(fd: number): void;
  /** pipe2(O_CLOEXEC) -> [readFd, writeFd] (both blocking; libuv makes an adopted end non-blocking). */
  makePipe(): [readFd: number, writeFd: number];
  /** open(path, O_RDWR | O_CLOEXEC) -> fd. */
  nsmOpen(path: string): number;
  /** NSM_IOCTL_RAW off the event loop with a 12288-byte response buffer; request <= 4096 bytes (else EMSGSIZE, before the call). */
  nsmRequest(fd: number, request: Uint8Array): Promise<Buffer>;
  bringUpLoopback(): void;
  seedEntropy(bytes: Uint8Array): { credited: boolean };
  setChildSubreaper(): void;
  reapZombie(pid: number): number | null;
  /** mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options). Needs CAP_SYS_ADMIN. */
  mountTmpfs(target: string, options: string): void;
  /** umount2(target, MNT_DETACH). */
  unmount(target: string): void;
  /** mount(source, target, MS_BIND): a file of cloister's over one of the image's (undone by unmount). */
  bindMount(source: string, target: string): void;
  /**
   * Joins two connected stream sockets in the kernel (splice through a pipe per direction, driven by
   * the event loop). The fds are dup()ed; the caller stops reading its own and closes them after
   * `done`. EOF is carried as shutdown(SHUT_WR); an error, spliceCancel or idleMs without traffic
   * (0: never) ends both. `done` gets the first error (null on a clean end) and bytes moved each way.
   */
  spliceJoin(
    fdA: number,
    fdB: number,
    idleMs: number,
    done: (err: NativeError | null, aToB: number, bToA: number) => void,
    /** Sent to A (B) before any tunnel byte and not counted in the totals: a "200", an "Ok" frame. */
    greetA?: Uint8Array | null,
    greetB?: Uint8Array | null,
  ): SpliceHandle;
  /** Ends a pump now; its `done` still runs (with ECANCELED). No-op once it ended. */
  spliceCancel(handle: SpliceHandle): void;
  /** Pipe pairs kept for reuse by finished pumps on this thread (bounded; empty, default-size pipes). */
  spliceIdlePipes(): number;
  /** getsockopt(SOL_IP, SO_ORIGINAL_DST): where a connection the nat table redirected was going (IPv4). */
  originalDestination(fd: number): { address: string; port: number };
  /**
   * IPT_SO_GET_INFO (size 0: the raw struct ipt_getinfo) or IPT_SO_GET_ENTRIES (the raw struct
   * ipt_get_entries with `size` bytes of entries) of an iptables (legacy) table.
   */
  iptablesGet(table: string, size: number): Buffer;
  /** IPT_SO_SET_REPLACE: `blob` is a whole struct ipt_replace; its counters pointer is filled in natively. */
  iptablesReplace(blob: Uint8Array): void;
  /** Sends one rtnetlink message (with NLM_F_ACK) and throws the errno of a negative acknowledgement. */
  rtnetlinkRequest(message: Uint8Array): void;
  // The per-connection fast path (native/src/fdwait.c, src/transport/fast.ts): waits on the loop's
  // poller, no thread held, no net.Socket made.
  /** Non-blocking TCP connect to a numeric IPv4/IPv6 address; the fd has TCP_NODELAY. */
  tcpConnect(ip: string, port: number, timeoutMs: number): Promise<number>;
  /** Non-blocking connect to a Unix stream socket. */
  unixConnect(path: string, timeoutMs: number): Promise<number>;
  /** The bytes queued on fd once it is readable (at most maxBytes), left in the kernel (MSG_PEEK); empty at EOF. */
  peekHead(fd: number, maxBytes: number, timeoutMs: number): Promise<Buffer>;
  /** One [u16 LE length][body] frame's body, read exactly; empty for a zero length; ECONNRESET at EOF. */
  readFrame(fd: number, timeoutMs: number): Promise<Buffer>;
  /** Drops exactly n queued bytes (a peeked head); EAGAIN if fewer are there. */
  recvDiscard(fd: number, n: number): void;
  /** Sends all of bytes at once or throws: EAGAIN if the socket took none or only part (the stream is then unusable). */
  sendAll(fd: number, bytes: Uint8Array): void;
  /** shutdown(SHUT_RDWR): wakes a wait on fd with EOF. */
  shutdownFd(fd: number): void;
}

/** Opaque handle of a running splice pump. */
export type SpliceHandle = { readonly __splice: unique symbol };

/** The error shape the addon throws. */
export interface NativeError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

export function isNativeError(e: unknown): e is NativeError {
  return e instanceof Error && typeof (e as Partial<NativeError>).code === 'string' && 'errno' in e;
}

let cached: NativeAddon | undefined;

export function nativeCandidates(): string[] {
  const here = dirname(fileURLToPath(import.meta.url));
  const list: string[] = [];
  if (process.env.CLOISTER_NATIVE) list.push(process.env.CLOISTER_NATIVE);
  list.push(join(dirname(process.execPath), 'cloister_native.node'));
  for (const up of ['..', '../..']) list.push(join(here, up, 'native/build/Release/cloister_native.node'));
  return list;
}

export function loadNative(): NativeAddon {
  if (cached) return cached;
  const require = createRequire(import.meta.url);
  const tried = nativeCandidates();
  for (const p of tried) {
    if (existsSync(p)) {
      const addon = require(p) as Partial<NativeAddon>;
      if (addon.abiVersion !== NATIVE_ABI_VERSION) {
        throw new Error(
          `cloister native addon ${p} has ABI version ${String(addon.abiVersion ?? 'none (a build older than version 2)')}, ` +
            `this cloister needs ${NATIVE_ABI_VERSION}: rebuild it (\`npm install\` or \`node-gyp rebuild --directory native\`)`,
        );
      }
      cached = addon as NativeAddon;
      return cached;
    }
  }
  throw new Error(`cloister native addon not found (tried: ${tried.join(', ')}); run \`npm ci\` to build it`);
}
