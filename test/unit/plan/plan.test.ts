// src/plan/: the decisions the services share are made once from the loaded config.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { egressEnabled, egressPolicy } from '../../../src/config/egress.ts';
import { loadConfig } from '../../../src/config/load.ts';
import { DEFAULT_EGRESS_PROXY_PORT } from '../../../src/constants.ts';
import { buildPlan } from '../../../src/plan/index.ts';

const BASE = 'version: v1\nname: plan-test\ntarget: t:latest\nsources:\n  app: a:latest\n';

function load(t: TestContext, manifest: string, settings?: string) {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-plan-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'enclaver.yaml'), BASE + manifest);
  if (settings !== undefined) writeFileSync(join(dir, 'cloister.yaml'), settings);
  return loadConfig({ manifestPath: join(dir, 'enclaver.yaml') });
}

test('egress is off without an allow rule: no egress plan', (t) => {
  for (const m of ['', 'egress:\n  deny: [evil.com]\n']) {
    const config = load(t, m);
    assert.equal(egressEnabled(config.manifest), false);
    assert.equal(buildPlan(config).egress, null, m);
  }
});

test('the egress plan: default port decided once, and the policy validation compiled is the one used', (t) => {
  const config = load(
    t,
    'egress:\n  allow: ["**.example.com", "10.0.0.0/8"]\n  deny: ["10.1.0.0/16", "10.2.0.0/16:443"]\nkms_proxy:\n  listen_port: 9999\n',
  );
  const plan = buildPlan(config);
  assert.ok(plan.egress);
  assert.equal(plan.egress.port, DEFAULT_EGRESS_PROXY_PORT);
  assert.deepEqual(plan.egress.rules, { allow: 2, deny: 2 });
  // Compiled once: loading the config compiled it; the plan (and the KMS proxy's check) reuse it.
  assert.equal(plan.egress.policy, egressPolicy(config.manifest));
  assert.equal(buildPlan(config).egress?.policy, plan.egress.policy);
  assert.equal(plan.kms?.port, 9999);
});

test('the relay deny ranges come prepared: same answer per port, local ranges only behind a wildcard', (t) => {
  const config = load(
    t,
    'egress:\n  allow: ["**.example.com", "10.0.0.0/8"]\n  deny: ["10.1.0.0/16", "10.2.0.0/16:443"]\n',
  );
  const policy = buildPlan(config).egress!.policy;
  const viaWildcard = policy.check('a.example.com', 443);
  const viaAddress = policy.check('10.9.9.9', 80);
  assert.ok(viaWildcard.allowed && viaAddress.allowed);
  assert.deepEqual(policy.resolvedDenyRanges(viaAddress, 80), ['10.1.0.0/16']);
  assert.deepEqual(policy.resolvedDenyRanges(viaAddress, 443), ['10.1.0.0/16', '10.2.0.0/16']);
  const wild = policy.resolvedDenyRanges(viaWildcard, 80);
  assert.equal(wild[0], '10.1.0.0/16');
  assert.ok(wild.includes('127.0.0.0/8'), `local ranges follow a wildcard decision: ${wild.join(' ')}`);

  // Without per-port deny rules the list is built once and handed out as is.
  const plain = buildPlan(load(t, 'egress:\n  allow: ["10.0.0.0/8"]\n  deny: ["10.1.0.0/16"]\n')).egress!
    .policy;
  const d = plain.check('10.9.9.9', 80);
  assert.equal(plain.resolvedDenyRanges(d, 80), plain.resolvedDenyRanges(d, 443));
});

test('an explicit egress.proxy_port, the API and metrics ports, and the metrics port served over ingress', (t) => {
  const config = load(
    t,
    'egress:\n  proxy_port: 3128\n  allow: [example.com]\ningress:\n  - listen_port: 8080\napi:\n  listen_port: 9000\n',
    'api:\n  metrics_port: 9100\ningress:\n  proxy_protocol: true\n',
  );
  const plan = buildPlan(config);
  assert.equal(plan.egress?.port, 3128);
  assert.deepEqual(plan.api, { port: 9000 });
  assert.deepEqual(plan.metrics, { port: 9100 });
  assert.equal(plan.kms, null);
  assert.equal(plan.ingress.proxyProtocol, true);
  assert.deepEqual(
    plan.ingress.ports.map((p) => ({ port: p.port, tls: p.secureContext !== null, proxy: p.proxyProtocol })),
    [
      { port: 8080, tls: false, proxy: undefined },
      // The metrics port never takes a PROXY header: the host side forwards it as is.
      { port: 9100, tls: false, proxy: false },
    ],
  );
});

test('attested TLS: off unless a port asks for it or app files are wanted; the ports are marked', (t) => {
  const ingress = 'ingress:\n  - listen_port: 8443\n  - listen_port: 8080\n';
  assert.equal(buildPlan(load(t, ingress)).attestedTls, null);
  assert.equal(buildPlan(load(t, ingress, 'attested_tls:\n  max_age_ms: 5000\n')).attestedTls, null);

  const plan = buildPlan(load(t, ingress, 'ingress:\n  ports:\n    8443:\n      tls: attested\n'));
  assert.deepEqual(plan.attestedTls, {
    maxAgeMs: 600_000,
    commonName: 'plan-test',
    dnsNames: ['localhost'],
    files: null,
  });
  const byPort = new Map(plan.ingress.ports.map((p) => [p.port, p]));
  assert.equal(byPort.get(8443)?.attestedTls, true);
  assert.equal(
    byPort.get(8443)?.secureContext,
    null,
    'no static context: the attested one is per connection',
  );
  assert.equal(byPort.get(8080)?.attestedTls, undefined);

  const files = buildPlan(
    load(
      t,
      ingress,
      'app:\n  uid: 1000\n  gid: 1001\nattested_tls:\n  app_files: true\n  reload_signal: null\n',
    ),
  );
  assert.deepEqual(files.attestedTls?.files, {
    dir: 'attested-tls',
    uid: 1000,
    gid: 1001,
    reloadSignal: null,
  });
  assert.ok(
    files.ingress.ports.every((p) => !p.attestedTls),
    'app files alone mark no port',
  );
});
