// The attestation API as a real server on 127.0.0.1 over the software NSM, driven with fetch and curl.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent, get as httpGet } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { startMetricsServer } from '../../../src/api/metrics-server.ts';
import { type ApiService, startApiServer } from '../../../src/api/server.ts';
import { verifyAttestation } from '../../../src/attestation/verify.ts';
import { type Config, DEFAULT_SETTINGS } from '../../../src/config/types.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { registry } from '../../../src/metrics.ts';
import { SoftwareNsm } from '../../../src/nsm/software.ts';
import { type Nsm, NsmError } from '../../../src/nsm/types.ts';
import { buildPlan } from '../../../src/plan/index.ts';
import { raw } from '../../helpers/raw-http.ts';

const run = promisify(execFile);

const config: Config = {
  manifestPath: '/dev/null',
  configDir: '/dev/null',
  manifest: { version: 'v1', name: 'api-test', target: 'x', sources: { app: 'x' }, api: { listen_port: 0 } },
  settings: DEFAULT_SETTINGS,
};

async function start(
  t: { after: (fn: () => Promise<void>) => void },
  nsm: Nsm,
): Promise<{ api: ApiService; url: string }> {
  const api = await startApiServer(buildPlan(config).api!, {
    logger: createLogger({ level: 'silent' }),
    nsm,
  });
  t.after(() => api.close());
  return { api, url: `http://127.0.0.1:${api.port}/v1/attestation` };
}

const PCR0 = 'e0'.repeat(48);
const swPromise = SoftwareNsm.open({ stateDir: null, pcrs: { '0': PCR0 } });

async function counter(result: string): Promise<number> {
  const m = (await registry.getMetricsAsJSON()).find((x) => x.name === 'cloister_attestation_requests_total');
  return Number(m?.values.find((v) => v.labels.result === result)?.value ?? 0);
}

test('POST {nonce, user_data, public_key} returns the raw COSE_Sign1 document as application/cbor', async (t) => {
  const sw = await swPromise;
  const { url } = await start(t, sw.client());
  const { publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const pem = publicKey.export({ type: 'spki', format: 'pem' }) as string;
  const spki = publicKey.export({ type: 'spki', format: 'der' });
  const before = await counter('ok');
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({
      nonce: Buffer.from('nonce-1').toString('base64'),
      user_data: Buffer.from('hello').toString('base64'),
      public_key: pem,
      unknown_field: 'ignored',
    }),
  });
  assert.equal(res.status, 200);
  assert.equal(res.headers.get('content-type'), 'application/cbor');
  const doc = Buffer.from(await res.arrayBuffer());
  assert.equal(doc[0], 0x84);
  const v = await verifyAttestation(doc, {
    rootPem: sw.rootPem,
    nonce: Buffer.from('nonce-1'),
    userData: Buffer.from('hello'),
    // The full DER SubjectPublicKeyInfo, not odyn 0.5's inner key bytes.
    publicKey: spki,
    pcrs: { 0: PCR0 },
  });
  assert.deepEqual(v.publicKey, spki);
  assert.equal(await counter('ok'), before + 1);

  // Every field is optional; an empty object gives a document with nulls.
  const empty = await fetch(url, { method: 'POST', body: '{}' });
  assert.equal(empty.status, 200);
  const e = await verifyAttestation(Buffer.from(await empty.arrayBuffer()), { rootPem: sw.rootPem });
  assert.equal(e.nonce, null);
  assert.equal(e.publicKey, null);
});

test('GET with hex query parameters, and the JSON form', async (t) => {
  const sw = await swPromise;
  const { url } = await start(t, sw.client());
  const res = await fetch(`${url}?nonce=00ff&user_data=616263`);
  assert.equal(res.status, 200);
  const v = await verifyAttestation(Buffer.from(await res.arrayBuffer()), { rootPem: sw.rootPem });
  assert.deepEqual(v.nonce, Buffer.from('00ff', 'hex'));
  assert.deepEqual(v.userData, Buffer.from('abc'));

  const j = await fetch(`${url}?nonce=0102`, { headers: { Accept: 'application/json' } });
  assert.equal(j.status, 200);
  assert.match(j.headers.get('content-type') ?? '', /^application\/json/);
  const body = (await j.json()) as Record<string, unknown>;
  assert.equal(body.nonce, '0102');
  assert.equal((body.pcrs as Record<string, string>)['0'], PCR0);
  assert.equal(body.debug, false);
  await verifyAttestation(Buffer.from(body.document as string, 'base64'), { rootPem: sw.rootPem });

  const p = await fetch(`${url}?format=json`, {
    method: 'POST',
    body: JSON.stringify({ user_data: 'AQID' }),
  });
  assert.equal(((await p.json()) as Record<string, unknown>).user_data, '010203');
});

test('refusals are JSON with a status: 400, 404, 405, 413 — never a dropped connection', async (t) => {
  const sw = await swPromise;
  const { url } = await start(t, sw.client());
  const before = await counter('bad_request');
  const cases: Array<[RequestInit & { path?: string }, number, RegExp]> = [
    [{ method: 'POST', body: 'not json' }, 400, /invalid JSON/],
    [{ method: 'POST', body: '' }, 400, /invalid JSON/],
    [{ method: 'POST', body: '[1]' }, 400, /JSON object/],
    [{ method: 'POST', body: '{"nonce": "***"}' }, 400, /nonce: invalid base64/],
    [{ method: 'POST', body: '{"nonce": 5}' }, 400, /nonce: expected a base64 string/],
    [
      { method: 'POST', body: JSON.stringify({ user_data: Buffer.alloc(1025).toString('base64') }) },
      400,
      /user_data: 1025 bytes/,
    ],
    [{ method: 'POST', body: '{"public_key": "hello"}' }, 400, /public_key: expected a PEM/],
    [
      {
        method: 'POST',
        body: JSON.stringify({ public_key: '-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n' }),
      },
      400,
      /public_key: not a valid SubjectPublicKeyInfo/,
    ],
    [{ method: 'GET', path: '?nonce=abc' }, 400, /nonce: expected an even-length hex/],
    [{ method: 'GET', path: `?nonce=${'00'.repeat(1025)}` }, 400, /nonce: 1025 bytes/],
    [{ method: 'PUT', body: '{}' }, 405, /method PUT not allowed/],
    [{ method: 'DELETE' }, 405, /not allowed/],
    [{ method: 'POST', body: 'x'.repeat(70 * 1024) }, 413, /request body over/],
  ];
  for (const [init, status, re] of cases) {
    const res = await fetch(url + (init.path ?? ''), init);
    assert.equal(res.status, status, `${init.method} ${String(init.body).slice(0, 40)}`);
    assert.match(res.headers.get('content-type') ?? '', /^application\/json/);
    const body = (await res.json()) as { error: string };
    assert.match(body.error, re);
    if (status === 405) assert.equal(res.headers.get('allow'), 'GET, POST');
  }
  assert.equal(await counter('bad_request'), before + 10);
  const nf = await fetch(url.replace('/v1/attestation', '/v1/attestations'));
  assert.equal(nf.status, 404);
  assert.match(((await nf.json()) as { error: string }).error, /no such path/);
  const root = await fetch(url.replace('/v1/attestation', '/'));
  assert.equal(root.status, 404);

  // A malformed request line still gets an answer (400), not a reset.
  const port = Number(new URL(url).port);
  const raw = await new Promise<string>((resolve, reject) => {
    const s = connect(port, '127.0.0.1', () => s.write('GARBAGE\r\n\r\n'));
    let data = '';
    s.setEncoding('utf8');
    s.on('data', (d) => {
      data += d;
    });
    s.on('end', () => resolve(data));
    s.on('error', reject);
    s.setTimeout(5000, () => reject(new Error('timeout')));
  });
  assert.match(raw, /^HTTP\/1\.1 400 /);
});

test('an NSM failure is a 503 with the reason', async (t) => {
  const failing = (await swPromise).client();
  failing.attestation = async () => {
    throw new NsmError('InternalError', 'NSM Attestation failed: InternalError');
  };
  const { url } = await start(t, failing);
  const before = await counter('nsm_error');
  const res = await fetch(url, { method: 'POST', body: '{}' });
  assert.equal(res.status, 503);
  assert.match(((await res.json()) as { error: string }).error, /NSM attestation failed: .*InternalError/);
  assert.equal(await counter('nsm_error'), before + 1);
});

test('curl: POST JSON and GET, as a user would from a shell', async (t) => {
  const sw = await swPromise;
  const { url } = await start(t, sw.client());
  const dir = mkdtempSync(join(tmpdir(), 'cloister-api-'));
  t.after(async () => rmSync(dir, { recursive: true, force: true }));
  const out = join(dir, 'doc.cbor');
  const body = JSON.stringify({ nonce: Buffer.from('curl').toString('base64') });
  const { stdout } = await run(
    'curl',
    [
      '-sS',
      '--max-time',
      '10',
      '-o',
      out,
      '-w',
      '%{http_code} %{content_type}',
      '-H',
      'Content-Type: application/json',
      '--data',
      body,
      url,
    ],
    { timeout: 15_000 },
  );
  assert.equal(stdout, '200 application/cbor');
  const v = await verifyAttestation(readFileSync(out), { rootPem: sw.rootPem, nonce: Buffer.from('curl') });
  assert.equal(v.digest, 'SHA384');

  const get = await run(
    'curl',
    ['-sS', '--max-time', '10', '-H', 'Accept: application/json', `${url}?nonce=c0ffee`],
    {
      timeout: 15_000,
    },
  );
  assert.equal(JSON.parse(get.stdout).nonce, 'c0ffee');

  const bad = await run('curl', ['-sS', '--max-time', '10', '-w', '\n%{http_code}', '--data', 'nope', url], {
    timeout: 15_000,
  });
  const [json, , code] = bad.stdout.split('\n'); // body, its trailing newline, then the status
  assert.equal(code, '400');
  assert.match(JSON.parse(json!).error, /invalid JSON/);
});

// Hostile clients: requests Node's HTTP server would otherwise drop (CONNECT) or answer without a
// reason (unparsable HTTP) get a status and a JSON body, on the API and the metrics port alike.
async function startApiAndMetrics(t: { after: (fn: () => Promise<void>) => void }) {
  const sw = await SoftwareNsm.open({ stateDir: null });
  const config: Config = {
    manifestPath: '/dev/null',
    configDir: '/dev/null',
    manifest: { version: 'v1', name: 'h', target: 'x', sources: { app: 'x' }, api: { listen_port: 0 } },
    settings: { ...DEFAULT_SETTINGS, api: { metrics_port: 0 } },
  };
  const plan = buildPlan(config);
  const deps = { logger: createLogger({ level: 'silent' }), nsm: sw.client() };
  const api = await startApiServer(plan.api!, deps);
  t.after(() => api.close());
  const metrics = await startMetricsServer(plan.metrics!, deps);
  t.after(() => metrics.close());
  return { api: api.port, metrics: metrics.port! };
}

test('CONNECT and unparsable requests get a status and a JSON reason on the API and metrics ports', async (t) => {
  const ports = await startApiAndMetrics(t);
  for (const port of [ports.api, ports.metrics]) {
    let r = await raw(port, 'CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n');
    assert.equal(r.status, 405, `CONNECT on ${port}: ${JSON.stringify(r)}`);
    assert.match(JSON.parse(r.body).error, /CONNECT/);
    r = await raw(port, 'HELLO\r\n\r\n');
    assert.equal(r.status, 400);
    assert.match(JSON.parse(r.body).error, /malformed HTTP request/);
    assert.ok(r.closed);
  }
});

test('a private key sent as public_key is refused without echoing it', async (t) => {
  const ports = await startApiAndMetrics(t);
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const b64 = privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64');
  const body = JSON.stringify({
    public_key: `-----BEGIN PUBLIC KEY-----\n${b64}\n-----END PUBLIC KEY-----\n`,
  });
  const r = await raw(
    ports.api,
    `POST /v1/attestation HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
  );
  assert.equal(r.status, 400);
  assert.match(JSON.parse(r.body).error, /public_key: not a valid SubjectPublicKeyInfo/);
  assert.ok(!r.body.includes(b64.slice(20, 60)));
});

test('close() lets a request in flight finish on its kept-alive connection, then closes that connection', {
  timeout: 20_000,
}, async () => {
  const slow = (await swPromise).client();
  let release!: () => void;
  const released = new Promise<void>((r) => {
    release = r;
  });
  const inner = slow.attestation.bind(slow);
  let called = false;
  slow.attestation = async (req) => {
    called = true;
    await released;
    return inner(req);
  };
  // A grace far longer than the test: close() resolves early only because the connection is closed once
  // its answer is out (Node alone keeps it open until its keep-alive timeout, and close() would wait).
  const api = await startApiServer(buildPlan(config).api!, {
    logger: createLogger({ level: 'silent' }),
    nsm: slow,
    closeGraceMs: 60_000,
  });
  const url = `http://127.0.0.1:${api.port}/v1/attestation`;
  const agent = new Agent({ keepAlive: true });
  const answered = new Promise<{ status: number; bytes: number }>((resolve, reject) => {
    const req = httpGet(`${url}?nonce=01`, { agent }, (res) => {
      let bytes = 0;
      res.on('data', (d: Buffer) => {
        bytes += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
    });
    req.on('error', reject);
  });
  // The request is in the server, waiting on the NSM, when close() is called.
  while (!called) await new Promise((r) => setTimeout(r, 5));
  const closed = api.close();
  assert.equal(api.close(), closed, 'close() is idempotent');
  // Not accepting any more, while the request in flight goes on.
  await assert.rejects(fetch(url), /fetch failed/);
  release();
  const { status, bytes } = await answered;
  assert.equal(status, 200);
  assert.ok(bytes > 1000, `the whole document arrived (${bytes} bytes)`);
  // Node keeps the idle connection for its 5 s keep-alive timeout unless close() ends it: closed first.
  let keepAlive: NodeJS.Timeout | undefined;
  const first = await Promise.race([
    closed.then(() => 'closed'),
    new Promise((r) => {
      keepAlive = setTimeout(() => r('still open after 3 s'), 3000);
    }),
  ]);
  clearTimeout(keepAlive);
  assert.equal(first, 'closed');
  await closed;
  agent.destroy();
});
