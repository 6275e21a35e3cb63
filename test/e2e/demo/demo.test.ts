// `npm run demo` (examples/hello/demo.mjs) end to end. The whole demo, host side included, runs in its own
// network namespace (`unshare -n`, lo brought up): the egress relay in `cloister dev` can then reach
// nothing but this namespace's loopback, whatever the app asks for.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { test } from 'node:test';

function runDemo(env: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(
      'unshare',
      ['-n', 'sh', '-c', 'ip link set lo up && exec "$0" examples/hello/demo.mjs', process.execPath],
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } },
    );
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      err += d.toString();
    });
    const timer = setTimeout(() => child.kill('SIGINT'), 50_000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, out, err });
    });
  });
}

test('npm run demo: every step of the story happens and is checked', {
  timeout: 60_000,
}, async () => {
  const r = await runDemo();
  const why = `\nstdout:\n${r.out}\nstderr:\n${r.err}`;
  assert.equal(r.code, 0, why);
  // The banner: ports, proxy, KMS endpoint, NSM root, PCRs and a key policy binding PCR0.
  assert.match(r.err, /ingress\s+http:\/\/127\.0\.0\.1:\d+ -> enclave port 8080/, why);
  assert.match(r.err, /NSM root\s+\/\S+\/nsm\/root\.pem/, why);
  const pcr0 = /PCR0\s+([0-9a-f]{96})/.exec(r.err)?.[1];
  assert.ok(pcr0, why);
  assert.ok(r.err.includes(`"kms:RecipientAttestation:PCR0":"${pcr0}"`), why);
  assert.equal(r.err.match(/cloister dev: "hello" runs/g)?.length, 1, 'the banner is printed once');
  // Egress: allowed fetch answered by the host-side server; the metadata service refused by its rule.
  assert.match(r.out, /\(allowed\)\s+-> 200: sunny/, why);
  assert.match(
    r.out,
    /-> 403: blocked by egress security policy: .*denied by rule '169\.254\.169\.254'/,
    why,
  );
  // Attestation verified, and the PCR0 the app read from its document is the one dev announced.
  assert.match(r.out, /signature, certificate chain and our nonce check out/, why);
  assert.ok(r.out.includes(`PCR0 (this enclave's measurement) = ${pcr0!.slice(0, 24)}`), why);
  // KMS: direct Decrypt refused, attested Decrypt through the proxy opens the secret.
  assert.match(r.out, /without attestation -> refused \(AccessDeniedException\)/, why);
  assert.match(r.out, /attested -> "the launch code is 0000"/, why);
  // Ingress: the host side called the app.
  assert.match(
    r.out,
    /\[host side\] GET http:\/\/127\.0\.0\.1:\d+\/hello -> 200: hello from inside the enclave/,
    why,
  );
  // Boot-time secrets bound to PCR0: the password in env and a 0400 RAM file, the TLS key serving 8443.
  assert.match(
    r.out,
    /password: in DEMO_PASSWORD and in \/\S+\/demo\/password \(mode 0400, a RAM file system\)/,
    why,
  );
  assert.match(
    r.out,
    /\[host side\] GET https:\/\/127\.0\.0\.1:\d+\/hello -> 200 over TLS \(certificate verified\): hello from inside the enclave/,
    why,
  );
  assert.match(r.out, /Demo finished: every check passed\./, why);
  assert.ok(!r.out.includes('FAILED'), why);
});
