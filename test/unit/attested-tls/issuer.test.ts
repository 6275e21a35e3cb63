// The enclave side of attested TLS (src/attested-tls/issuer.ts) with the software NSM and a real RAM
// directory, the key PCR against a forged certificate, and the Node client (client.ts) against it over
// loopback TLS in this process.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { type AddressInfo, createServer as createNetServer } from 'node:net';
import { type TestContext, test } from 'node:test';
import { TLSSocket } from 'node:tls';
import {
  buildAttestedCertificate,
  expectedKeyPcr,
  generateAttestedKey,
  KEY_PCR,
} from '../../../src/attested-tls/certificate.ts';
import { AttestedAgent, connectAttested } from '../../../src/attested-tls/client.ts';
import { type AttestedTls, startAttestedTls } from '../../../src/attested-tls/issuer.ts';
import { verifyAttestedCertificate } from '../../../src/attested-tls/verify.ts';
import { AttestationError, AttestedTlsIssueError } from '../../../src/errors.ts';
import { createLogger } from '../../../src/log/logger.ts';
import { SoftwareNsm } from '../../../src/nsm/software.ts';
import type { AttestedTlsPlan } from '../../../src/plan/attested-tls.ts';
import { RamDir } from '../../../src/system/ram-dir.ts';

const PCR0 = 'cd'.repeat(48);
const logger = createLogger({ name: 'test', level: 'silent' });

async function setup(t: TestContext, plan: Partial<AttestedTlsPlan> = {}) {
  const sw = await SoftwareNsm.open({ stateDir: null, pcrs: { '0': PCR0 } });
  const ram = await RamDir.open({ path: null, mount: 'never' });
  t.after(() => ram.close());
  const events: string[] = [];
  const recording = {
    writeFile: async (rel: string, data: Uint8Array, opts: Parameters<RamDir['writeFile']>[2]) => {
      const path = await ram.writeFile(rel, data, opts);
      events.push(`write ${rel}`);
      return path;
    },
  };
  const a = await startAttestedTls(
    {
      maxAgeMs: 600_000,
      commonName: 'issuer-test',
      dnsNames: ['localhost'],
      files: { dir: 'attested-tls', uid: null, gid: null, reloadSignal: 'SIGHUP' },
      ...plan,
    },
    {
      nsm: sw.client(),
      logger,
      ramDir: async () => recording,
      signalApp: (sig) => events.push(`signal ${sig}`),
    },
  );
  t.after(() => a.close());
  return { sw, a, events };
}

/**
 * A TLS server that serves `a` as ingress does (a TLSSocket per connection with the current context and
 * the SNI callback for nonces); `reply` answers the first bytes received.
 */
async function serve(t: TestContext, a: AttestedTls, reply: (first: Buffer) => string): Promise<number> {
  const server = createNetServer((raw) => {
    const tls = new TLSSocket(raw, {
      isServer: true,
      secureContext: a.current().context,
      SNICallback: a.sniCallback,
    } as never);
    tls.on('error', () => {});
    tls.once('data', (d: Buffer) => tls.end(reply(d)));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => server.close());
  return (server.address() as AddressInfo).port;
}

test('startAttestedTls: the first certificate and the app files (key matches, modes, on RAM)', async (t) => {
  const { a, events } = await setup(t);
  assert.ok(a.files);
  assert.deepEqual(events, [
    'write attested-tls/key.pem',
    'write attested-tls/chain.pem',
    'write attested-tls/attestation.cbor',
    'write attested-tls/cert.pem',
  ]);
  const cert = new X509Certificate(readFileSync(a.files.cert));
  assert.ok(
    cert.checkPrivateKey(
      await import('node:crypto').then((c) => c.createPrivateKey(readFileSync(a.files!.key))),
    ),
  );
  assert.equal(statSync(a.files.key).mode & 0o777, 0o400, 'the key is readable by its owner only');
  assert.equal(statSync(a.files.cert).mode & 0o777, 0o444);
  assert.equal(cert.raw.equals(a.current().der), true);
  // chain.pem: the NSM leaf that signed the document, then the CAs up to the root.
  const chain = readFileSync(a.files.chain, 'utf8').match(/-----BEGIN CERTIFICATE-----/g);
  assert.equal(chain?.length, 5);
});

test('renew: a new certificate for the same key; files replaced, key first and cert last, then the signal', async (t) => {
  const { a, events } = await setup(t);
  const before = a.current();
  events.length = 0;
  const after = await a.renew();
  assert.notDeepEqual(after.der, before.der);
  assert.equal(a.current(), after);
  const keyOf = (der: Buffer) => new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' });
  assert.deepEqual(keyOf(after.der), keyOf(before.der), 'the key pair lives as long as the process');
  assert.deepEqual(events, [
    'write attested-tls/key.pem',
    'write attested-tls/chain.pem',
    'write attested-tls/attestation.cbor',
    'write attested-tls/cert.pem',
    'signal SIGHUP',
  ]);
  assert.equal(readFileSync(a.files!.cert, 'utf8'), after.pem);
});

test('renewal runs by itself on its timer (due at 3/4 of max age), and the app is told', async (t) => {
  const { a, events } = await setup(t, { maxAgeMs: 1000 });
  const first = a.current();
  const deadline = Date.now() + 20_000;
  while (!events.includes('signal SIGHUP')) {
    assert.ok(Date.now() < deadline, `no renewal: ${events.join(', ')}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.notEqual(a.current(), first);
  assert.ok(a.current().documentTime > first.documentTime);
});

test('the Node client: verifies the served certificate, and a nonce in SNI gets a document made for it', async (t) => {
  const { sw, a } = await setup(t);
  const port = await serve(t, a, (d) => `echo ${d}`);
  const plain = await connectAttested({ host: '127.0.0.1', port, rootPem: sw.rootPem, pcrs: { 0: PCR0 } });
  plain.socket.destroy();
  assert.equal(
    plain.identity.certificate.sha256,
    new X509Certificate(a.current().der).fingerprint256.replace(/:/g, '').toLowerCase(),
  );
  assert.equal(plain.identity.attestation.nonce, null);

  const fresh = await connectAttested({ host: '127.0.0.1', port, rootPem: sw.rootPem, fresh: true });
  fresh.socket.write('hello');
  const text = await new Promise<string>((r) => {
    let s = '';
    fresh.socket.on('data', (d) => {
      s += d;
    });
    fresh.socket.on('end', () => r(s));
  });
  assert.equal(text, 'echo hello');
  assert.match(fresh.identity.attestation.nonce ?? '', /^[0-9a-f]{32}$/);
  assert.notEqual(
    fresh.identity.certificate.sha256,
    plain.identity.certificate.sha256,
    'made for this handshake',
  );
  assert.equal(fresh.identity.public_key_sha256, plain.identity.public_key_sha256, 'for the same key');
});

test('AttestedAgent: a request goes out only to a verified server; a wrong PCR0 fails before anything is sent', async (t) => {
  const { sw, a } = await setup(t);
  let requests = 0;
  const port = await serve(t, a, () => {
    requests++;
    return 'HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok';
  });
  const get = (agent: AttestedAgent) =>
    new Promise<string>((resolve, reject) => {
      const req = httpsRequest({ host: '127.0.0.1', port, path: '/', agent }, (res) => {
        let body = '';
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve(body));
      });
      req.on('error', reject);
      req.end();
    });
  const good = new AttestedAgent({ policy: { rootPem: sw.rootPem, pcrs: { 0: PCR0 } } });
  t.after(() => good.destroy());
  assert.equal(await get(good), 'ok');
  assert.equal(requests, 1);
  const bad = new AttestedAgent({ policy: { rootPem: sw.rootPem, pcrs: { 0: 'ee'.repeat(48) } } });
  t.after(() => bad.destroy());
  await assert.rejects(get(bad), (e: unknown) => e instanceof AttestationError && e.check === 'pcr');
  assert.equal(requests, 1, 'the refused server never saw the request');
});

test('the key PCR: locked to the TLS key at start, so a document attested for another key cannot pass', async (t) => {
  const { sw, a } = await setup(t);
  const spki = new X509Certificate(a.current().der).publicKey.export({ type: 'spki', format: 'der' });
  const pcr = await sw.client().describePcr(KEY_PCR);
  assert.equal(pcr.lock, true);
  assert.deepEqual(Buffer.from(pcr.data), expectedKeyPcr(spki));

  // An attestation oracle inside the enclave (an app forwarding the attestation API, say) attests the
  // attacker's key; the attacker wraps that document in a certificate for its key. Every check but the key
  // PCR would pass: the public_key is the attacker's and the PCRs are the enclave's.
  const forge = async (nsm: SoftwareNsm) => {
    const attacker = await generateAttestedKey();
    const document = await nsm.client().attestation({ public_key: attacker.spki });
    return buildAttestedCertificate({
      key: attacker,
      document,
      commonName: 'forged',
      dnsNames: [],
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 600_000),
    });
  };
  const policy = { rootPem: sw.rootPem, pcrs: { 0: PCR0 } };
  await assert.rejects(
    verifyAttestedCertificate(await forge(sw), policy),
    (e: unknown) => e instanceof AttestationError && e.check === 'binding' && /PCR31/.test(e.message),
  );
  // The same forgery against an enclave that never locked the key PCR passes: the PCR is what stops it.
  const unlocked = await SoftwareNsm.open({ stateDir: null, pcrs: { '0': PCR0 } });
  await verifyAttestedCertificate(await forge(unlocked), { ...policy, rootPem: unlocked.rootPem });

  // A second start on the same NSM cannot re-measure a locked PCR: it fails, naming it.
  await assert.rejects(
    startAttestedTls(
      { maxAgeMs: 600_000, commonName: 'again', dnsNames: [], files: null },
      { nsm: sw.client(), logger },
    ),
    (e: unknown) => e instanceof AttestedTlsIssueError && /PCR31/.test(e.message),
  );
});
