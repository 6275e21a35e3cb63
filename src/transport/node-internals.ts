// Every use of Node's undocumented internals, in one place (issue 10). Each one is here because no
// public API does the job; checkNodeInternals() proves at start-up, on the running Node, that each
// still behaves as assumed, so a Node upgrade that changes one fails loudly before any traffic instead
// of misbehaving on the first tunnel. scripts/check-node-internals.mjs (run by `npm run lint`) keeps
// them out of every other file.
//
//   process.binding('pipe_wrap')   the one way to hand libuv an arbitrary stream fd (a vsock socket, a
//                                  pipe from the addon): net.Server/Socket({fd}) only guess TCP and Unix
//   server._handle + _listen2()    what server.listen(handle) does, for a handle that is not TCP
//   new Socket({ handle })         what net.Server does for an accepted connection
//   socket._handle.fd / readStop   the fd the splice pump takes over, and stopping Node's own reads on it
//   socket._readableState.ended    EOF already read (readableEnded is only true once 'end' was emitted)
//   socket._writableState          raising the write buffer's high-water mark on a live socket
//   socket._httpMessage            the response an http.Server has started on a socket
//   server._handle.onconnection    where libuv hands JS an accepted connection's handle, before
//                                  net.Server makes a Socket of it (the per-connection fast path)

import { writeSync } from 'node:fs';
import { IncomingMessage, ServerResponse } from 'node:http';
import { Server, Socket, type SocketConstructorOpts } from 'node:net';
import type { Duplex } from 'node:stream';
import { getSystemErrorName } from 'node:util';
import { onceWithin } from '../deadline.ts';
import type { NativeAddon } from '../native.ts';

/** A libuv Pipe handle (pipe_wrap's Pipe), the kind of handle every adopted fd gets. */
export interface PipeHandle {
  open(fd: number): number;
  readonly fd: number;
  close(cb?: () => void): void;
}
interface PipeWrapBinding {
  Pipe: new (type: number) => PipeHandle;
  constants: { SOCKET: number; SERVER: number };
}
interface StreamHandle {
  fd?: number;
  reading?: boolean;
  readStop?: () => number;
  constructor?: { name?: string };
}
interface SocketInternals {
  _handle?: StreamHandle | null;
  _readableState?: { ended?: boolean };
  _writableState?: { highWaterMark: number };
  _read: (n: number) => void;
  _httpMessage?: ServerResponse | null;
}
interface ServerInternals {
  _handle: PipeHandle | null;
  _listen2(address: null, port: number, addressType: number, backlog: number): void;
}

const internals = (s: Duplex | Server) => s as unknown as SocketInternals;

let pipeWrap: PipeWrapBinding | undefined;
function pipeBinding(): PipeWrapBinding {
  // Deprecated in the docs (DEP0111) but present and silent in Node 20-26.
  pipeWrap ??= (process as unknown as { binding(name: string): PipeWrapBinding }).binding('pipe_wrap');
  return pipeWrap;
}

function uvError(op: string, rc: number): Error {
  const code = getSystemErrorName(rc);
  return Object.assign(new Error(`${op} failed: ${code}`), { code, errno: -rc });
}

/** A libuv Pipe handle of `type` that has taken over `fd`; throws (the caller still owns fd) if it cannot. */
export function adoptFd(fd: number, type: 'SERVER' | 'SOCKET', what: string): PipeHandle {
  const { Pipe, constants } = pipeBinding();
  const handle = new Pipe(constants[type]);
  const rc = handle.open(fd);
  if (rc !== 0) {
    handle.close();
    throw uvError(what, rc);
  }
  return handle;
}

/**
 * Makes `server` listen on an adopted listening handle: what server.listen(tcpHandle) does, which
 * listen() itself allows only for TCP handles (the same internal path cluster uses). Emits 'listening'
 * or 'error' on the server as listen() would.
 */
export function listenOnHandle(server: Server, handle: PipeHandle, backlog: number): void {
  const s = server as unknown as ServerInternals;
  s._handle = handle;
  s._listen2(null, -1, -1, backlog);
}

/** An accepted connection's libuv handle (TCP or Pipe), before any net.Socket is made for it. */
export interface AcceptedHandle {
  readonly fd: number;
  close(cb?: () => void): void;
  /** TCP handles only: TCP_NODELAY (a tunnel's small writes must not wait for an ACK). */
  setNoDelay?(enable: boolean): number;
}
type OnConnection = (this: unknown, err: number, client: AcceptedHandle | undefined) => void;

/**
 * Offers each connection a listening server accepts to `take` first, as its raw handle: no net.Socket is
 * made for one that `take` keeps (returns true). The rest go to the server as usual, and the returned
 * function hands a kept one back to the server later (net.Server's own accept path: maxConnections,
 * the Socket, 'connection'). Throws a NodeInternalsError at once if the server's handle has no such hook.
 */
export function takeConnections(
  server: Server,
  take: (client: AcceptedHandle) => boolean,
): (client: AcceptedHandle) => void {
  const handle = internals(server)._handle as unknown as { onconnection?: OnConnection } | null;
  const original = handle?.onconnection;
  expect(
    handle !== null && typeof original === 'function' && original.length === 2,
    "a listening server's _handle.onconnection(err, clientHandle) is missing",
  );
  handle!.onconnection = function (err, client) {
    const fd = client?.fd;
    if (err || !client || typeof fd !== 'number' || fd < 0 || !take(client))
      original!.call(this, err, client);
  };
  return (client) => original!.call(handle, 0, client);
}

/** A net.Socket around an adopted handle, as net.Server makes for an accepted connection. */
export function socketFromHandle(
  handle: PipeHandle | AcceptedHandle,
  opts: { readable: boolean; writable: boolean; allowHalfOpen?: boolean },
): Socket {
  return new Socket({ handle, ...opts } as unknown as SocketConstructorOpts);
}

/** The fd under a server's or socket's libuv handle, if it has one. */
export function handleFd(obj: Server | Socket): number | undefined {
  const fd = internals(obj)._handle?.fd;
  return typeof fd === 'number' && fd >= 0 ? fd : undefined;
}

/**
 * The fd of a plain TCP or Unix/Pipe stream socket whose reads can be stopped (what the splice pump
 * takes over), else undefined (a TLS socket's handle, a socket without a handle).
 */
export function spliceableHandleFd(s: Socket): number | undefined {
  const h = internals(s)._handle;
  const kind = h?.constructor?.name;
  if (!h || (kind !== 'TCP' && kind !== 'Pipe') || typeof h.readStop !== 'function') return undefined;
  return handleFd(s);
}

/** True when the socket has already read its peer's EOF (even if 'end' is not emitted yet). */
export function eofRead(s: Socket): boolean {
  return internals(s)._readableState?.ended !== false;
}

/**
 * Detaches Node from the socket's reading for good: stops libuv's reads on its fd and makes sure nothing
 * (resume(), read()) starts them again. Writes, 'close' and destroy() still work as before.
 */
export function stopReadingForever(s: Socket): void {
  const i = internals(s);
  s.pause();
  i._read = () => {};
  if (i._handle) {
    i._handle.reading = false;
    i._handle.readStop?.();
  }
}

/** Raises a live socket's write-buffer high-water mark (never lowers it). */
export function raiseWriteHighWaterMark(s: Duplex, bytes: number): void {
  const ws = internals(s)._writableState;
  if (ws) ws.highWaterMark = Math.max(ws.highWaterMark, bytes);
}

/** A response on this server socket has begun (its head is written): nothing raw may follow it. */
export function responseStarted(socket: Duplex): boolean {
  return internals(socket)._httpMessage?.headersSent === true;
}

// ---------------------------------------------------------------------------------------------
// the start-up self-check

class NodeInternalsError extends Error {
  constructor(what: string) {
    super(
      `Node ${process.version} does not behave as cloister assumes: ${what} (src/transport/node-internals.ts); ` +
        'use a Node version cloister supports',
    );
    this.name = 'NodeInternalsError';
  }
}

function expect(ok: boolean, what: string): void {
  if (!ok) throw new NodeInternalsError(what);
}

const immediate = () => new Promise((r) => setImmediate(r));
/** Returns after at least one poll phase of the loop has run (the second check phase comes after one). */
async function afterOnePoll(): Promise<void> {
  await immediate();
  await immediate();
}

/** What happened first within `ms`: `event`, an 'error' (its message), or 'timeout'. */
function first(emitter: NodeJS.EventEmitter, event: string, ms: number): Promise<string> {
  return onceWithin(emitter, event, ms, () => new Error('timeout')).then(
    () => event,
    (err: Error) => err.message,
  );
}

let checked: Promise<void> | undefined;

/**
 * Proves each internal above still behaves as assumed on the running Node, once per process. With the
 * addon: a pipe from the addon adopted, read, detached (no read after stopReadingForever) and its
 * internals read back; with `vsock`, a listening vsock socket adopted into a net.Server that emits
 * 'listening'. Always: the http response a server assigns to a socket is found on it. Rejects with a
 * NodeInternalsError naming what differs.
 */
export function checkNodeInternals(opts: { addon: NativeAddon | null; vsock: boolean }): Promise<void> {
  checked ??= runChecks(opts);
  return checked;
}

async function runChecks({ addon, vsock }: { addon: NativeAddon | null; vsock: boolean }): Promise<void> {
  let binding: PipeWrapBinding;
  try {
    binding = pipeBinding();
  } catch (err) {
    throw new NodeInternalsError(`process.binding('pipe_wrap') is gone (${(err as Error).message})`);
  }
  expect(
    typeof binding.Pipe === 'function' &&
      typeof binding.constants?.SOCKET === 'number' &&
      typeof binding.constants?.SERVER === 'number',
    "process.binding('pipe_wrap') has no Pipe constructor with SOCKET/SERVER constants",
  );
  checkHttpMessage();
  if (addon) await checkAdoptedPipe(addon);
  if (addon && vsock) await checkAdoptedServer(addon);
}

function checkHttpMessage(): void {
  const socket = new Socket();
  const res = new ServerResponse(new IncomingMessage(socket));
  res.assignSocket(socket);
  expect(internals(socket)._httpMessage === res, 'socket._httpMessage is not the response assigned to it');
  expect(!responseStarted(socket), 'a fresh response counts as started');
  res.detachSocket(socket);
  socket.destroy();
}

async function checkAdoptedPipe(addon: NativeAddon): Promise<void> {
  const [readFd, writeFd] = addon.makePipe();
  let sock: Socket | undefined;
  try {
    let handle: PipeHandle;
    try {
      handle = adoptFd(readFd, 'SOCKET', 'adopting a pipe');
    } catch (err) {
      addon.closeFd(readFd);
      throw new NodeInternalsError(`pipe_wrap's Pipe cannot adopt a pipe fd (${(err as Error).message})`);
    }
    sock = socketFromHandle(handle, { readable: true, writable: false });
    expect(handleFd(sock) === readFd, 'new Socket({ handle }) does not keep the handle as socket._handle');
    expect(spliceableHandleFd(sock) === readFd, "an adopted pipe's handle is not a Pipe with readStop()");
    expect(!eofRead(sock), 'socket._readableState.ended is not false on an open socket');
    raiseWriteHighWaterMark(sock, 1 << 20);
    expect(
      sock.writableHighWaterMark === 1 << 20,
      'socket._writableState.highWaterMark is not the write buffer',
    );
    writeSync(writeFd, 'a');
    expect((await first(sock, 'data', 2000)) === 'data', 'an adopted pipe socket reads nothing');
    stopReadingForever(sock);
    sock.on('data', () => {});
    sock.resume();
    writeSync(writeFd, 'b');
    await afterOnePoll(); // a socket still reading would get the byte in that poll phase
    expect(sock.bytesRead === 1, 'reads go on after stopReadingForever');
  } finally {
    sock?.destroy();
    addon.closeFd(writeFd);
  }
}

async function checkAdoptedServer(addon: NativeAddon): Promise<void> {
  let fd: number;
  try {
    fd = addon.vsockSocket();
    addon.vsockBind(fd, 0xffffffff, 0xffffffff);
  } catch (err) {
    throw new NodeInternalsError(`no vsock socket to check server adoption with (${(err as Error).message})`);
  }
  let handle: PipeHandle;
  try {
    addon.vsockListen(fd, 1);
    handle = adoptFd(fd, 'SERVER', 'adopting a listening socket');
  } catch (err) {
    addon.closeFd(fd);
    throw new NodeInternalsError(`a listening vsock fd cannot be adopted (${(err as Error).message})`);
  }
  const server = new Server();
  const outcome = first(server, 'listening', 2000);
  listenOnHandle(server, handle, 1);
  const got = await outcome;
  server.close();
  expect(got === 'listening', `server._listen2 on an adopted handle gave ${got}, not 'listening'`);
}
