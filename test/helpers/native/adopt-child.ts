// Child process for test/native.test.ts, started by test/native/adopt.py with an inherited fd:
// adopts a listening or connected stream socket through the same code path as AF_VSOCK fds.
import type { Socket } from 'node:net';
import { serverFromListeningFd, socketFromConnectedFd } from '../../../src/transport/vsock.ts';

const [mode, fdArg] = process.argv.slice(2);
const fd = Number(fdArg);
const out = (o: unknown) => console.log(JSON.stringify(o));

// Reads until the peer half-closes, then answers on the still-open write side and ends.
function echoAfterEnd(sock: Socket, done: () => void) {
  const chunks: Buffer[] = [];
  sock.on('data', (d: Buffer) => chunks.push(d));
  sock.on('end', () => {
    const got = Buffer.concat(chunks).toString();
    out({ event: 'end', got, isSocket: sock.constructor.name, allowHalfOpen: sock.allowHalfOpen });
    sock.end(`echo:${got}`);
  });
  sock.on('close', done);
}

if (mode === 'server') {
  const server = await serverFromListeningFd(fd);
  out({ event: 'listening', listening: server.listening });
  server.once('connection', (sock: Socket) =>
    echoAfterEnd(sock, () => server.close(() => out({ event: 'closed' }))),
  );
} else {
  const sock = socketFromConnectedFd(fd);
  echoAfterEnd(sock, () => out({ event: 'closed' }));
}
