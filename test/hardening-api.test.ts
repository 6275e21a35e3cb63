// Security review of the attestation API and the metrics server: requests Node's HTTP server would
// otherwise drop (CONNECT) or answer without a reason (unparsable HTTP) get a status and a JSON body.
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { test } from 'node:test';
import { startMetricsServer } from '../src/api/metrics-server.ts';
import { startApiServer } from '../src/api/server.ts';
import { type Config, DEFAULT_SETTINGS } from '../src/config/types.ts';
import { createLogger } from '../src/log/logger.ts';
import { SoftwareNsm } from '../src/nsm/software.ts';
import type { Transport } from '../src/transport/types.ts';
import { raw } from './hardening-harness.ts';

async function start(t: { after: (fn: () => Promise<void>) => void }) {
  const sw = await SoftwareNsm.open({ stateDir: null });
  const config: Config = {
    manifestPath: '/dev/null',
    configDir: '/dev/null',
    manifest: { version: 'v1', name: 'h', target: 'x', sources: { app: 'x' }, api: { listen_port: 0 } },
    settings: { ...DEFAULT_SETTINGS, api: { metrics_port: 0 } },
  };
  const ctx = {
    config,
    transport: {} as Transport,
    logger: createLogger({ level: 'silent' }),
    nsm: sw.client(),
  };
  const api = await startApiServer(ctx);
  t.after(() => api.close());
  const metrics = await startMetricsServer(ctx);
  t.after(() => metrics.close());
  return { api: api.port, metrics: metrics.port! };
}

test('CONNECT and unparsable requests get a status and a JSON reason on the API and metrics ports', async (t) => {
  const ports = await start(t);
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
  const ports = await start(t);
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
