// /healthz and /metrics on api.metrics_port, with the attestation counter visible after API use.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { startMetricsServer } from '../../../src/api/metrics-server.ts';
import { startApiServer } from '../../../src/api/server.ts';
import { type Config, DEFAULT_SETTINGS } from '../../../src/config/types.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { appState } from '../../../src/metrics.ts';
import { SoftwareNsm } from '../../../src/nsm/software.ts';
import { buildPlan } from '../../../src/plan/index.ts';
import { raw } from '../../helpers/raw-http.ts';

function context(metricsPort: number | null, nsm: Awaited<ReturnType<typeof SoftwareNsm.open>>) {
  const config: Config = {
    manifestPath: '/dev/null',
    configDir: '/dev/null',
    manifest: { version: 'v1', name: 'm', target: 'x', sources: { app: 'x' }, api: { listen_port: 0 } },
    settings: { ...DEFAULT_SETTINGS, api: { metrics_port: metricsPort } },
  };
  return { plan: buildPlan(config), logger: createLogger({ level: 'silent' }), nsm: nsm.client() };
}

test('metrics off by default; on a port it serves /healthz and /metrics with attestation counts', async (t) => {
  const sw = await SoftwareNsm.open({ stateDir: null });
  // Off: the plan has no metrics server for the supervisor to start.
  assert.equal(context(null, sw).plan.metrics, null);

  const ctx = context(0, sw);
  const metrics = await startMetricsServer(ctx.plan.metrics!, ctx);
  t.after(() => metrics.close());
  const api = await startApiServer(ctx.plan.api!, ctx);
  t.after(() => api.close());
  const base = `http://127.0.0.1:${metrics.port}`;

  // Health follows the supervised app: unavailable while it is down, ok while it runs.
  appState.set(0);
  const down = await fetch(`${base}/healthz`);
  assert.equal(down.status, 503);
  assert.deepEqual(await down.json(), { status: 'unavailable', app: 'not running' });
  appState.set(1);
  t.after(() => appState.set(0));
  const h = await fetch(`${base}/healthz`);
  assert.equal(h.status, 200);
  assert.deepEqual(await h.json(), { status: 'ok', app: 'running' });

  assert.equal((await fetch(`http://127.0.0.1:${api.port}/v1/attestation?nonce=01`)).status, 200);
  assert.equal((await fetch(`http://127.0.0.1:${api.port}/v1/attestation?nonce=0`)).status, 400);
  const m = await fetch(`${base}/metrics`);
  assert.equal(m.status, 200);
  assert.match(m.headers.get('content-type') ?? '', /^text\/plain/);
  const text = await m.text();
  assert.match(text, /^cloister_attestation_requests_total\{result="ok"\} [1-9]\d*$/m);
  assert.match(text, /^cloister_attestation_requests_total\{result="bad_request"\} [1-9]\d*$/m);

  assert.equal((await fetch(`${base}/nope`)).status, 404);
  const post = await fetch(`${base}/metrics`, { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.get('allow'), 'GET, HEAD');
});

test('request targets that new URL() cannot parse get a 400 from metrics and the attestation API', async (t) => {
  const sw = await SoftwareNsm.open({ stateDir: null });
  const ctx = context(0, sw);
  const metrics = await startMetricsServer(ctx.plan.metrics!, ctx);
  t.after(() => metrics.close());
  const api = await startApiServer(ctx.plan.api!, ctx);
  t.after(() => api.close());
  for (const port of [metrics.port!, api.port])
    for (const target of ['//', '//a:99999/', 'http://[::1/']) {
      const r = await raw(port, `GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      assert.equal(r.status, 400, `${port} GET ${target}: ${r.headers}`);
      assert.match(r.body, /not a valid URL/);
    }
  // Both still serve afterwards.
  assert.equal((await fetch(`http://127.0.0.1:${metrics.port}/metrics`)).status, 200);
});
