// What Node's HTTP server does not answer by itself: a CONNECT request (Node destroys the socket when
// no 'connect' listener exists) and a request it cannot parse (Node writes a bare status, no body).
// Every refusal must be a status and a body saying why, in the server's own error format.
import type { Server } from 'node:http';
import { STATUS_CODES } from 'node:http';
import type { Duplex } from 'node:stream';

export interface Refusal {
  /** Content-Type of the body. */
  type: string;
  body: string;
  headers?: Record<string, string>;
}

/** Renders a refusal in the server's error format (JSON {"error"}, KMS's {"__type","message"}...). */
export type RenderRefusal = (status: number, message: string) => Refusal;

/** The API servers' error format: {"error": "..."}. */
export function jsonRefusal(_status: number, message: string): Refusal {
  return { type: 'application/json', body: `${JSON.stringify({ error: message })}\n` };
}

function answer(socket: Duplex, status: number, r: Refusal): void {
  if (!socket.writable) {
    socket.destroy();
    return;
  }
  const headers = {
    'Content-Type': r.type,
    'Content-Length': String(Buffer.byteLength(r.body)),
    Connection: 'close',
    ...r.headers,
  };
  const head = Object.entries(headers)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join('');
  socket.end(`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? ''}\r\n${head}\r\n${r.body}`);
}

/** A response on this server socket has begun (its head is written): nothing raw may follow it. */
export function responseStarted(socket: Duplex): boolean {
  const res = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } | null })._httpMessage;
  return res?.headersSent === true;
}

export function refuseOddRequests(
  server: Server,
  render: RenderRefusal,
  onClientError?: (err: Error) => void,
): void {
  server.on('connect', (req, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    const r = render(405, `method ${req.method} not allowed`);
    answer(socket, 405, r);
  });
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    onClientError?.(err);
    // A response already on its way on this connection (a bad request pipelined after a good one)
    // cannot be followed by a raw one: as Node's own handler does, just close.
    if (err.code === 'ECONNRESET' || responseStarted(socket)) {
      socket.destroy();
      return;
    }
    const status =
      err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
    const why =
      status === 431
        ? 'request headers too large'
        : status === 408
          ? 'request not received in time'
          : `malformed HTTP request (${err.code ?? err.message})`;
    answer(socket, status, render(status, why));
  });
}
