// One pipe for the app's stdout and stderr, as odyn gives it (docs/reference/enclaver.md, "Log port"): the
// app writes both streams into the same pipe, so the log stream keeps the app's own order (an `echo out; echo
// err >&2` loop reads back exactly alternating). Node's spawn can only make one pipe per fd, so the pipe
// comes from the native addon (pipe2 with O_CLOEXEC: no other child inherits it). spawn dup2()s the write end
// onto the app's fds 1 and 2; the read end is adopted by a libuv Pipe handle and read as a net.Socket, like
// an adopted vsock fd.
import type { Socket } from 'node:net';
import { loadNative, type NativeAddon } from '../native.ts';
import { adoptFd, socketFromHandle } from '../transport/node-internals.ts';

export interface SharedPipe {
  /** Give this to spawn as both stdout and stderr; close it (closeWriteEnd) right after spawn. */
  readonly writeFd: number;
  /** The read end; EOF once the app and everything that inherited its stdout/stderr closed them. */
  readonly output: Socket;
  /** Closes the parent's copy of the write end (idempotent), so the reader sees EOF when the app's go. */
  closeWriteEnd(): void;
}

type PipeMaker = Pick<NativeAddon, 'makePipe' | 'closeFd'>;

let maker: PipeMaker | null | undefined;
let unavailableReason: string | null = null;

function pipeMaker(): PipeMaker | null {
  if (maker !== undefined) return maker;
  try {
    const native = loadNative();
    maker = { makePipe: native.makePipe.bind(native), closeFd: native.closeFd.bind(native) };
  } catch (err) {
    maker = null;
    unavailableReason = (err as Error).message;
  }
  return maker;
}

/** Why the app gets two pipes instead of one (null while one pipe is possible). */
export function sharedPipeUnavailable(): string | null {
  pipeMaker();
  return unavailableReason;
}

/**
 * A fresh pipe for one app run, or null when the addon cannot make one (see sharedPipeUnavailable).
 * Throws (nothing left open) if the pipe cannot be made or adopted, e.g. EMFILE.
 */
export function openSharedPipe(): SharedPipe | null {
  const native = pipeMaker();
  if (!native) return null;
  const [readFd, writeFd] = native.makePipe();
  let handle: ReturnType<typeof adoptFd>;
  try {
    handle = adoptFd(readFd, 'SOCKET', 'adopting the app output pipe');
  } catch (err) {
    native.closeFd(readFd);
    native.closeFd(writeFd);
    throw err;
  }
  // Read-only, as Node's own child stdout sockets.
  const output = socketFromHandle(handle, { readable: true, writable: false });
  let writeOpen = true;
  return {
    writeFd,
    output,
    closeWriteEnd() {
      if (!writeOpen) return;
      writeOpen = false;
      native.closeFd(writeFd);
    },
  };
}
