// What Node's HTTP server does not answer by itself: a CONNECT request (Node destroys the socket when
// no 'connect' listener exists) and a request it cannot parse (Node writes a bare status, no body).
// Every refusal must be a status and a body saying why, in the server's own error format (one of the
// renderers of src/errors.ts).
import type { Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';
import {
  type CloisterError,
  type ErrorRenderer,
  HeadersTooLargeError,
  MalformedHttpError,
  MethodNotAllowedError,
  RequestTimeoutError,
} from '../errors.ts';
import { responseStarted } from '../transport/node-internals.ts';

// Whether a response has begun on a socket is read from Node's internals, kept in one module.
export { responseStarted };

function answer(socket: Duplex, err: CloisterError, render: ErrorRenderer): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const r = render(err);
  const headers = {
    ...r.headers,
    'Content-Length': String(Buffer.byteLength(r.body)),
    Connection: 'close',
  };
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(`HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? ''}\r\n${head}\r\n${r.body}`);
}

/** The refusal for an error of Node's HTTP parser, chosen by its code (never by its message). */
export function parserRefusal(err: NodeJS.ErrnoException): CloisterError {
  if (err.code === 'HPE_HEADER_OVERFLOW') return new HeadersTooLargeError('request headers too large');
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') return new RequestTimeoutError('request not received in time');
  return new MalformedHttpError(`malformed HTTP request (${err.code ?? err.message})`, { cause: err });
}

export function refuseOddRequests(
  server: Server,
  render: ErrorRenderer,
  onClientError?: (err: Error) => void,
): void {
  server.on('connect', (req, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    answer(socket, new MethodNotAllowedError(`method ${req.method} not allowed`), render);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    onClientError?.(err);
    // A response already on its way on this connection (a bad request pipelined after a good one)
    // cannot be followed by a raw one: as Node's own handler does, just close.
    if (err.code === 'ECONNRESET' || responseStarted(socket)) {
      socket.destroy();
      return;
    }
    answer(socket, parserRefusal(err), render);
  });
}
