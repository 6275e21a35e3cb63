// parseConnectHead (src/egress/connect-head.ts): the egress proxy's fast path serves only what it
// recognises as a complete, well-formed CONNECT head; everything else (null) goes to Node's HTTP server.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseConnectHead } from '../../../src/egress/connect-head.ts';

const MAX = 16384;

test('complete CONNECT heads: the target as Node reports it and the head length', () => {
  const cases: [string, string][] = [
    ['CONNECT example.org:443 HTTP/1.1\r\n\r\n', 'example.org:443'],
    ['CONNECT 127.0.0.1:8080 HTTP/1.0\r\nHost: 127.0.0.1:8080\r\n\r\n', '127.0.0.1:8080'],
    [
      'CONNECT [::1]:443 HTTP/1.1\r\nUser-Agent: curl/8.5.0\r\nProxy-Connection: Keep-Alive\r\n\r\n',
      '[::1]:443',
    ],
    // Targets the policy then refuses still come through verbatim (same 400/403 as Node's path).
    ['CONNECT user:pw@127.0.0.1:443 HTTP/1.1\r\n\r\n', 'user:pw@127.0.0.1:443'],
    ['CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n', '127.0.0.1'],
    ['CONNECT a..b:443 HTTP/1.1\r\nX-Empty:\r\nX-Tab: a\tb\r\n\r\n', 'a..b:443'],
  ];
  for (const [head, authority] of cases) {
    // Bytes after the head (a TLS ClientHello sent early) are not part of it.
    const got = parseConnectHead(Buffer.from(`${head}\x16\x03\x01`, 'latin1'), MAX);
    assert.deepEqual(got, { authority, length: Buffer.byteLength(head, 'latin1') }, JSON.stringify(head));
  }
});

test('anything else is left to Node: partial, not CONNECT, malformed, framing fields, too long', () => {
  const cases = [
    'CONNECT example.org:443 HTTP/1.1\r\n', // incomplete
    'CONNECT example.org:443 HTTP/1.1\r\nX-Slow: ',
    'GET http://example.org/ HTTP/1.1\r\nHost: example.org\r\n\r\n',
    'connect example.org:443 HTTP/1.1\r\n\r\n',
    'CONNECT  example.org:443 HTTP/1.1\r\n\r\n',
    'CONNECT example.org:443 HTTP/2.0\r\n\r\n',
    'CONNECT example.org:443\r\n\r\n',
    'CONNECT 127.0.0.1:44\r\n3 HTTP/1.1\r\n\r\n',
    'CONNECT exa"mple.org:443 HTTP/1.1\r\n\r\n',
    'CONNECT example.org:443 HTTP/1.1\nHost: x\r\n\r\n', // bare LF
    'CONNECT example.org:443 HTTP/1.1\r\nHost : x\r\n\r\n', // space before the colon
    'CONNECT example.org:443 HTTP/1.1\r\nX-A: 1\r\n continued\r\n\r\n', // obs-fold
    'CONNECT example.org:443 HTTP/1.1\r\nX-A: a\x00b\r\n\r\n',
    'CONNECT example.org:443 HTTP/1.1\r\nX-A: a\rb\r\n\r\n',
    'CONNECT example.org:443 HTTP/1.1\r\nContent-Length: 0\r\n\r\n',
    'CONNECT example.org:443 HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n',
    '',
  ];
  for (const head of cases)
    assert.equal(parseConnectHead(Buffer.from(head, 'latin1'), MAX), null, JSON.stringify(head));
  const big = `CONNECT example.org:443 HTTP/1.1\r\nX-Big: ${'a'.repeat(100)}\r\n\r\n`;
  assert.equal(parseConnectHead(Buffer.from(big), big.length - 1), null, 'one byte over maxBytes');
  assert.notEqual(parseConnectHead(Buffer.from(big), big.length), null, 'exactly maxBytes');
});
