// The full egress path in one process, driven by real clients: curl, Python's urllib, Node's http/tls.
//   client -> proxy 127.0.0.1 -> emulated vsock -> relay -> local server on loopback
// Every dial here goes to loopback (or is refused before dialling, or never resolves).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { Agent, request as httpRequest } from 'node:http';
import { test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { registry } from '../../../src/metrics.ts';
import {
  connectTunnel,
  deadPort,
  makeCert,
  rawExchange,
  startEchoHttp,
  startHttps,
  startPath,
  startTcp,
} from '../../helpers/egress-fixture.ts';

const run = promisify(execFile);
const LOOP = ['127.0.0.1', '::1', 'host'];

test('curl: https through CONNECT (TLS to a local server, --cacert) and plain http absolute-form', async (t) => {
  const cert = makeCert(t);
  const httpsPort = await startHttps(t, cert);
  const httpPort = await startEchoHttp(t);
  const { proxyUrl, proxy } = await startPath(t, { allow: LOOP });
  assert.equal(proxy.env?.https_proxy, proxyUrl);
  const env = { ...process.env, ...proxy.env, NO_PROXY: '', no_proxy: '' };
  const tls = await run(
    'curl',
    ['-sS', '--max-time', '10', '--cacert', cert.certPath, `https://127.0.0.1:${httpsPort}/x?y=1`],
    { env },
  );
  assert.equal(tls.stdout, 'hello over tls GET /x?y=1');
  const plain = await run('curl', ['-sS', '--max-time', '10', `http://127.0.0.1:${httpPort}/p?q=2`], { env });
  const seen = JSON.parse(plain.stdout);
  assert.equal(seen.url, '/p?q=2');
  assert.equal(hdr(seen.rawHeaders, 'host'), `127.0.0.1:${httpPort}`);
  assert.equal(hdr(seen.rawHeaders, 'proxy-connection'), undefined);
});

test('Python urllib uses the proxy variables for http and https', async (t) => {
  const cert = makeCert(t);
  const httpsPort = await startHttps(t, cert, 'py tls');
  const httpPort = await startEchoHttp(t);
  const { proxy } = await startPath(t, { allow: LOOP });
  const script = `
import ssl, sys, urllib.request, json
ctx = ssl.create_default_context(cafile=sys.argv[1])
print(urllib.request.urlopen(f"https://127.0.0.1:{sys.argv[2]}/a", context=ctx, timeout=10).read().decode())
print(json.loads(urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[3]}/b", timeout=10).read())["url"])
`;
  const env = { ...process.env, ...proxy.env, NO_PROXY: '', no_proxy: '' };
  const out = await run('python3', ['-c', script, cert.certPath, String(httpsPort), String(httpPort)], {
    env,
  });
  assert.deepEqual(out.stdout.trim().split('\n'), ['py tls GET /a', '/b']);
});

// Node's own fetch honours HTTP(S)_PROXY from Node 24 on (NODE_USE_ENV_PROXY=1); Node 20's fetch has no
// proxy support without the undici package, so this case runs in CI's Node 26 pass.
const FETCH_PROXY = Number(process.versions.node.split('.')[0]) >= 24;
test("Node's fetch through the proxy (NODE_USE_ENV_PROXY): https via CONNECT and plain http", {
  skip: FETCH_PROXY ? false : 'fetch honours the proxy variables from Node 24 on',
}, async (t) => {
  const cert = makeCert(t);
  const httpsPort = await startHttps(t, cert, 'fetch tls');
  const httpPort = await startEchoHttp(t);
  const { proxy } = await startPath(t, { allow: LOOP });
  const env = {
    ...process.env,
    ...proxy.env,
    NO_PROXY: '',
    no_proxy: '',
    NODE_USE_ENV_PROXY: '1',
    NODE_EXTRA_CA_CERTS: cert.certPath,
  };
  const script = `
const [tlsPort, httpPort] = process.argv.slice(1);
const a = await (await fetch('https://127.0.0.1:' + tlsPort + '/f')).text();
const b = JSON.parse(await (await fetch('http://127.0.0.1:' + httpPort + '/g')).text());
console.log(a + '|' + b.url + '|' + (b.rawHeaders.includes('Proxy-Connection') ? 'leaked' : 'clean'));
`;
  const out = await run(
    process.execPath,
    ['--input-type=module', '-e', script, String(httpsPort), String(httpPort)],
    {
      env,
    },
  );
  assert.equal(out.stdout.trim(), 'fetch tls GET /f|/g|clean');
  // The refusal reaches fetch as a status, with the reason in the body.
  const denied = await run(
    process.execPath,
    ['-e', "fetch('http://203.0.113.9/x').then(async (r) => console.log(r.status + ' ' + (await r.text())))"],
    { env },
  );
  assert.match(denied.stdout, /^403 .*203\.0\.113\.9/);
});

test('Node: TLS over a CONNECT tunnel, IPv6 literal and the `host` alias', async (t) => {
  const cert = makeCert(t);
  const port = await startHttps(t, cert, 'node tls');
  const echo6 = await startTcp(t, (s) => s.pipe(s), '::1');
  const echo4 = await startTcp(t, (s) => s.pipe(s));
  const { proxyPort } = await startPath(t, { allow: LOOP });
  const tunnel = await connectTunnel(proxyPort, `127.0.0.1:${port}`);
  const secure = tlsConnect({ socket: tunnel, ca: cert.cert, servername: 'localhost' });
  secure.end('GET /n HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n');
  const reply = await collect(secure);
  assert.match(reply.toString(), /^HTTP\/1\.1 200 [\s\S]*node tls GET \/n/);
  // odyn sent "[::1]" with brackets to the host, whose resolver failed (P11).
  const v6 = await connectTunnel(proxyPort, `[::1]:${echo6}`);
  v6.end('six');
  assert.equal((await collect(v6)).toString(), 'six');
  const viaAlias = await connectTunnel(proxyPort, `HOST:${echo4}`);
  viaAlias.end('alias');
  assert.equal((await collect(viaAlias)).toString(), 'alias');
});

test('absolute-form: hop-by-hop headers stripped, Host rewritten to the URL target, keep-alive to the client', async (t) => {
  const httpPort = await startEchoHttp(t);
  const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] });
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const ports: number[] = [];
  for (const i of [1, 2]) {
    const { body, res, localPort } = await get(proxyPort, agent, `http://127.0.0.1:${httpPort}/k${i}`, {
      Host: 'evil.example',
      'Proxy-Connection': 'keep-alive',
      'Proxy-Authorization': 'Basic c2VjcmV0',
      Connection: 'keep-alive, X-Drop',
      'X-Drop': 'gone',
      'X-Keep': 'kept',
    });
    const seen = JSON.parse(body);
    assert.equal(seen.url, `/k${i}`);
    assert.equal(hdr(seen.rawHeaders, 'host'), `127.0.0.1:${httpPort}`);
    for (const h of ['proxy-connection', 'proxy-authorization', 'x-drop'])
      assert.equal(hdr(seen.rawHeaders, h), undefined, h);
    assert.equal(hdr(seen.rawHeaders, 'x-keep'), 'kept');
    assert.equal(res.headers['x-upstream'], 'echo');
    assert.notEqual(res.headers['keep-alive'], 'timeout=5', "the upstream's keep-alive is its own");
    ports.push(localPort);
  }
  assert.equal(ports[0], ports[1], 'the client connection was kept alive across requests');
});

test('absolute-form with a disagreeing Host header is judged and dialled by the URL', async (t) => {
  const httpPort = await startEchoHttp(t);
  const { proxyPort } = await startPath(t, { allow: ['allowed.test'] });
  // URL names a host that is not allowed; the Host header names one that is: refused.
  const r = await rawExchange(
    proxyPort,
    `GET http://127.0.0.1:${httpPort}/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n`,
    /\r\n\r\n[\s\S]*\n$/,
  );
  assert.match(r, /^HTTP\/1\.1 403 /);
  assert.match(r, /127\.0\.0\.1:\d+ is not in the egress policy/);
});

test('refusals: 403 names the host, 400 for malformed targets and smuggling, 502 refused, 504 timeout', async (t) => {
  const closed = await deadPort();
  const { proxyPort } = await startPath(
    t,
    { allow: ['127.0.0.1', 'slow.test'], deny: ['evil.test'] },
    {
      relay: {
        connectTimeoutMs: 300,
        lookup: () => new Promise(() => {}), // never answers: the relay times out
      },
    },
  );
  const cases: [string, RegExp, RegExp][] = [
    [
      'CONNECT example.org:443 HTTP/1.1\r\n\r\n',
      /^HTTP\/1\.1 403 /,
      /example\.org:443 is not in the egress policy/,
    ],
    ['CONNECT EVIL.test.:443 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 403 /, /denied by rule 'evil\.test'/],
    ['CONNECT 127.0.0.1 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400 /, /missing a port/],
    ['CONNECT 127.0.0.1:99999 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400 /, /out of range/],
    ['CONNECT user:pw@127.0.0.1:443 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400 /, /userinfo/],
    ['CONNECT 127.0.0.1:44\r\n3 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400 /, /malformed request/],
    ['CONNECT a..b:443 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 400 /, /empty label/],
    ['GET /relative HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n', /^HTTP\/1\.1 400 /, /URI is missing a host/],
    [
      'POST http://127.0.0.1:1/ HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
      /^HTTP\/1\.1 400 /,
      /./,
    ],
    [`CONNECT 127.0.0.1:${closed} HTTP/1.1\r\n\r\n`, /^HTTP\/1\.1 502 /, /os_err: 111: Connection refused/],
    ['CONNECT slow.test:443 HTTP/1.1\r\n\r\n', /^HTTP\/1\.1 504 /, /os_err: 110/],
  ];
  for (const [req, status, body] of cases) {
    const r = await rawExchange(proxyPort, req);
    assert.match(r, status, `${JSON.stringify(req)} -> ${r}`);
    assert.match(r, body, `${JSON.stringify(req)} -> ${r}`);
  }
  // Each decision is counted by verdict and deciding rule.
  const metrics = await registry.metrics();
  assert.match(metrics, /cloister_egress_decisions_total\{verdict="deny",rule="evil\.test"\} [1-9]/);
  assert.match(metrics, /cloister_egress_decisions_total\{verdict="deny",rule="\(default deny\)"\} [1-9]/);
  assert.match(metrics, /cloister_egress_decisions_total\{verdict="allow",rule="127\.0\.0\.1"\} [1-9]/);
});

test('slow or huge request headers are cut off (408 / 431), nothing hangs', async (t) => {
  const { proxyPort } = await startPath(
    t,
    { allow: ['127.0.0.1'] },
    { settings: { header_timeout_ms: 300, max_header_bytes: 2048 } },
  );
  const slow = await rawExchange(proxyPort, 'CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-Slow: ');
  assert.match(slow, /^HTTP\/1\.1 408 [\s\S]*header_timeout_ms/);
  const big = await rawExchange(
    proxyPort,
    `CONNECT 127.0.0.1:1 HTTP/1.1\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`,
  );
  assert.match(big, /^HTTP\/1\.1 431 [\s\S]*max_header_bytes/);
});

test('half-close both ways and large chunks through a tunnel', async (t) => {
  // The server reads until the client's FIN, then answers the hash and a 1 MiB block, then FINs.
  const block = randomBytes(1024 * 1024);
  const port = await startTcp(t, (s) => {
    const h = createHash('sha256');
    s.on('data', (d) => h.update(d));
    s.on('end', () => {
      s.write(h.digest('hex'));
      s.end(block);
    });
  });
  const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] });
  const tunnel = await connectTunnel(proxyPort, `127.0.0.1:${port}`);
  const up = randomBytes(3 * 1024 * 1024 + 17);
  tunnel.end(up); // our FIN must reach the server while its direction stays open
  const reply = await collect(tunnel);
  assert.equal(reply.subarray(0, 64).toString(), createHash('sha256').update(up).digest('hex'));
  assert.ok(reply.subarray(64).equals(block));
});

test('bytes pipelined right after CONNECT (before the 200) are not lost', async (t) => {
  const port = await startTcp(t, (s) => s.pipe(s));
  const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] });
  const payload = 'x'.repeat(100_000);
  const r = await rawExchange(
    proxyPort,
    `CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n${payload}`,
    new RegExp(`\r\n\r\nx{${payload.length}}$`),
  );
  assert.match(r, /^HTTP\/1\.1 200 /);
});

test('500 concurrent tunnels, and egress.max_tunnels refuses beyond the cap with 503', async (t) => {
  const port = await startTcp(t, (s) => s.pipe(s));
  const { proxyPort } = await startPath(t, { allow: ['127.0.0.1'] });
  const tunnels = await Promise.all(
    Array.from({ length: 500 }, () => connectTunnel(proxyPort, `127.0.0.1:${port}`)),
  );
  const answers = await Promise.all(
    tunnels.map((s, i) => {
      s.end(`tunnel ${i}`);
      return collect(s).then((b) => b.toString());
    }),
  );
  assert.deepEqual(
    answers,
    tunnels.map((_, i) => `tunnel ${i}`),
  );

  const capped = await startPath(t, { allow: ['127.0.0.1'] }, { settings: { max_tunnels: 2 } });
  const held = [
    await connectTunnel(capped.proxyPort, `127.0.0.1:${port}`),
    await connectTunnel(capped.proxyPort, `127.0.0.1:${port}`),
  ];
  const third = await rawExchange(capped.proxyPort, `CONNECT 127.0.0.1:${port} HTTP/1.1\r\n\r\n`);
  assert.match(third, /^HTTP\/1\.1 503 [\s\S]*max_tunnels/);
  for (const s of held) s.destroy();
});

test('P4: a name that resolves to a denied or loopback address is refused by the relay (deny_ips)', async (t) => {
  const port = await startTcp(t, (s) => s.end('reached'));
  const names: Record<string, string> = {
    'metadata.test': '169.254.169.254',
    'sneaky.test': '127.0.0.1',
    'named.test': '127.0.0.1',
  };
  let dialled = 0;
  const { proxyPort } = await startPath(
    t,
    { allow: ['**', 'named.test'], deny: ['169.254.169.254'] },
    {
      relay: {
        lookup: async (h) => {
          dialled++;
          return names[h] ? [{ address: names[h]!, family: 4 }] : [];
        },
      },
    },
  );
  const meta = await rawExchange(proxyPort, 'CONNECT metadata.test:80 HTTP/1.1\r\n\r\n');
  assert.match(
    meta,
    /^HTTP\/1\.1 403 [\s\S]*169\.254\.169\.254 \(in 169\.254\.169\.254\/32, denied by the enclave's policy\)/,
  );
  // Allowed only through `**`: a wildcard never opens the host's loopback, even after DNS.
  const sneaky = await rawExchange(proxyPort, `CONNECT sneaky.test:${port} HTTP/1.1\r\n\r\n`);
  assert.match(sneaky, /^HTTP\/1\.1 403 [\s\S]*127\.0\.0\.1 \(in 127\.0\.0\.0\/8/);
  // A rule naming the host exactly is the operator's explicit choice.
  const named = await connectTunnel(proxyPort, `named.test:${port}`);
  assert.equal((await collect(named)).toString(), 'reached');
  assert.equal(dialled, 3);
});

function hdr(raw: string[], name: string): string | undefined {
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name) return raw[i + 1];
  return undefined;
}

function collect(s: NodeJS.ReadableStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    s.on('data', (c: Buffer) => chunks.push(c));
    s.on('end', () => resolve(Buffer.concat(chunks)));
    s.on('error', reject);
    s.resume(); // connectTunnel hands sockets over paused
  });
}

function get(
  proxyPort: number,
  agent: Agent,
  url: string,
  headers: Record<string, string>,
): Promise<{ body: string; res: import('node:http').IncomingMessage; localPort: number }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port: proxyPort, path: url, agent, headers }, (res) => {
      const localPort = res.socket.localPort!;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ body: Buffer.concat(chunks).toString(), res, localPort }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
    req.end();
  });
}
