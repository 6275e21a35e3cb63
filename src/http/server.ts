// Small pieces every loopback HTTP server of cloister needs (attestation API, metrics, KMS proxy, KMS
// emulator): a request body read with a size limit, and listening with the bind error reported.
import type { IncomingMessage, Server } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * The whole request body, at most `maxBytes`; beyond that (declared or sent) rejects with `tooLarge()`.
 * An over-long body is left unread (the stream is paused): the caller answers 413 with
 * `Connection: close`, since the rest of the body cannot be skipped safely on a kept-alive connection.
 */
export function readLimitedBody(
  req: IncomingMessage,
  maxBytes: number,
  tooLarge: () => Error,
): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // Refuse a declared length at once rather than wait for bytes that will be thrown away.
    if (Number(req.headers['content-length'] ?? 0) > maxBytes) {
      reject(tooLarge());
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        req.pause();
        reject(tooLarge());
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/**
 * The request target as a URL, or null when it is not one. `new URL` throws on targets a client may
 * send (`//`, `//a:99999/`, `http://[::1/`); a server answers null with 400 instead of letting the
 * throw escape its request listener (an uncaught exception, and no answer at all).
 */
export function requestUrl(target: string | undefined): URL | null {
  try {
    return new URL(target ?? '/', 'http://localhost');
  } catch {
    return null;
  }
}

/** Listens on host:port (default loopback); resolves with the bound address, rejects on a bind error. */
export function listenOn(server: Server, port: number, host = '127.0.0.1'): Promise<AddressInfo> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}
