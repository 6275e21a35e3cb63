// Attested TLS end to end: `cloister dev` serves an ingress port with the enclave's attested certificate
// (or the app serves TLS itself from the files cloister writes), and `cloister attest connect|proxy`,
// curl and a forged server meet it over loopback. Real processes, real sockets, the software NSM's root.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { KeyObject } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TestContext, test } from 'node:test';
import { connect as tlsConnect, createServer as tlsServer } from 'node:tls';
import { parseCertificate } from '../../../src/attestation/x509.ts';
import {
  buildAttestedCertificate,
  documentFromCertificate,
  generateAttestedKey,
} from '../../../src/attested-tls/certificate.ts';
import { derToPem } from '../../../src/encoding/pem.ts';
import { type Captured, spawnCloister, waitFor } from '../../helpers/fixtures/child.ts';
import { writeSelfSigned } from '../../helpers/fixtures/tls.ts';

const opts = { timeout: 90_000 };

interface Dev {
  d: Captured;
  dir: string;
  root: string;
  pcr0: string;
  /** host:port of the ingress port on this machine. */
  addr: string;
}

/** `cloister dev` with one ingress port (enclave port `port`), the given cloister.yaml and app. */
async function startDev(t: TestContext, port: number, settings: string, app: string): Promise<Dev> {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-attested-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(
    join(dir, 'enclaver.yaml'),
    `version: v1\nname: attested-test\ntarget: t:latest\nsources:\n  app: app:latest\ningress:\n  - listen_port: ${port}\n`,
  );
  writeFileSync(join(dir, 'cloister.yaml'), settings);
  const state = join(dir, 'state');
  const d = spawnCloister(t, [
    'dev',
    '-f',
    join(dir, 'enclaver.yaml'),
    '--state-dir',
    state,
    '-p',
    `0:${port}`,
    '-v',
    '--',
    process.execPath,
    '-e',
    app,
  ]);
  let hostPort: string | undefined;
  await waitFor(d, 'the app and its ingress port', () => {
    hostPort = new RegExp(`ingress\\s+https?://127\\.0\\.0\\.1:(\\d+) -> enclave port ${port}`).exec(
      d.err(),
    )?.[1];
    return hostPort !== undefined && d.out().includes('app up');
  });
  const pcr0 = /PCR0\s+([0-9a-f]{96})/.exec(d.err())?.[1];
  assert.ok(pcr0, d.err());
  return { d, dir, root: join(state, 'nsm', 'root.pem'), pcr0, addr: `127.0.0.1:${hostPort}` };
}

interface Ran {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command without blocking this process's loop (the forged servers below run in it). */
function run(cmd: string, args: string[]): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(cmd, args, { encoding: 'utf8', timeout: 30_000 }, (err, stdout, stderr) => {
      const code = (err as { code?: unknown } | null)?.code;
      resolve({ status: err ? (typeof code === 'number' ? code : null) : 0, stdout, stderr });
    });
  });
}

const attest = (args: string[]) => run(process.execPath, ['dist/cli.js', 'attest', ...args]);
/** `attest connect` to the dev enclave, pinned to its PCR0 and the software NSM root. */
const connectPinned = (dev: Dev, ...extra: string[]) =>
  attest(['connect', dev.addr, '--pcr', `0=${dev.pcr0}`, '--root', dev.root, ...extra]);
const curl = (url: string) => run('curl', ['-sS', '--max-time', '10', url]);

/** The check named on stderr by a failed `cloister attest connect`. */
function failedCheck(r: Ran): string | undefined {
  return /^cloister attest: ([a-z_]+): /m.exec(r.stderr)?.[1];
}

const HTTP_APP = (port: number) =>
  `require('http').createServer((q,r)=>r.end('hello from the app\\n')).listen(${port},'127.0.0.1',()=>console.log('app up'))`;

/** `cloister dev` with an HTTP app behind an ingress port on which cloister terminates attested TLS. */
const startAttestedHttp = (t: TestContext, port: number) =>
  startDev(t, port, `ingress:\n  ports:\n    ${port}:\n      tls: attested\n`, HTTP_APP(port));

test(
  'attest connect: the dev enclave passes with its PCRs and the software root; each wrong thing is named',
  opts,
  async (t) => {
    const port = 18611;
    const dev = await startAttestedHttp(t, port);

    // The banner says how to check the port, with this run's root and PCR0; that command passes.
    const banner = /verify\s+cloister attest (connect .*)$/m.exec(dev.d.err())?.[1];
    assert.ok(banner, dev.d.err());
    assert.match(
      dev.d.err(),
      new RegExp(`ingress\\s+https://\\S+ -> enclave port ${port} \\(attested TLS\\)`),
    );
    const fromBanner = await attest(banner.split(' '));
    assert.equal(fromBanner.status, 0, fromBanner.stderr);

    const ok = await connectPinned(dev, '--max-age', '10m', '--reject-debug');
    assert.equal(ok.status, 0, ok.stderr);
    const identity = JSON.parse(ok.stdout);
    assert.equal(identity.verified, true);
    assert.equal(identity.attestation.pcrs['0'], dev.pcr0);
    assert.match(identity.certificate.subject, /CN=attested-test/);

    const wrongPcr = await attest(['connect', dev.addr, '--pcr', `0=${'00'.repeat(48)}`, '--root', dev.root]);
    assert.equal(wrongPcr.status, 1);
    assert.equal(failedCheck(wrongPcr), 'pcr', wrongPcr.stderr);
    assert.equal(wrongPcr.stdout, '', 'nothing printed as verified');

    // Another root: a second software NSM's, and by default AWS's.
    const other = join(dev.dir, 'other-nsm');
    const otherRoot = join(dev.dir, 'other-root.pem');
    writeFileSync(otherRoot, (await attest(['root', '--state-dir', other])).stdout);
    const wrongRoot = await attest(['connect', dev.addr, '--pcr', `0=${dev.pcr0}`, '--root', otherRoot]);
    assert.equal(failedCheck(wrongRoot), 'chain', wrongRoot.stderr);
    assert.equal(failedCheck(await attest(['connect', dev.addr, '--pcr', `0=${dev.pcr0}`])), 'chain');

    // A document older than the client accepts.
    await new Promise((r) => setTimeout(r, 1100));
    const old = await attest(['connect', dev.addr, '--root', dev.root, '--max-age', '1s']);
    assert.equal(failedCheck(old), 'age', old.stderr);

    // --fresh: a document made for this connection, carrying the client's nonce (checked by the client).
    const fresh = await attest(['connect', dev.addr, '--root', dev.root, '--fresh', '--max-age', '1m']);
    assert.equal(fresh.status, 0, fresh.stderr);
    assert.match(JSON.parse(fresh.stdout).attestation.nonce, /^[0-9a-f]{32}$/);

    // A usage mistake: exit 2 with connect's own usage.
    const usage = await attest(['connect']);
    assert.equal(usage.status, 2);
    assert.match(usage.stderr, /exactly one HOST:PORT\nusage:\n {2}cloister attest connect HOST:PORT/);

    // Nothing listening: the connect check, exit 1.
    const closed = await attest(['connect', '127.0.0.1:1', '--root', dev.root]);
    assert.equal(closed.status, 1);
    assert.equal(failedCheck(closed), 'connect', closed.stderr);

    // The host (who relays the ingress traffic and sees the certificate) copies the enclave's genuine
    // document into a certificate for a key of its own: the binding check refuses it.
    const genuine = await new Promise<Buffer>((resolve, reject) => {
      const [host, p] = dev.addr.split(':');
      const s = tlsConnect({ host, port: Number(p), rejectUnauthorized: false }, () => {
        resolve(s.getPeerCertificate().raw);
        s.destroy();
      });
      s.on('error', reject);
    });
    const document = documentFromCertificate(parseCertificate(genuine));
    const forgedKey = await generateAttestedKey();
    const forged = await buildAttestedCertificate({
      key: forgedKey,
      document,
      commonName: 'attested-test',
      dnsNames: ['localhost'],
      notBefore: new Date(Date.now() - 60_000),
      notAfter: new Date(Date.now() + 3600_000),
    });
    const impostor = tlsServer({
      key: KeyObject.from(forgedKey.keys.privateKey).export({ type: 'pkcs8', format: 'pem' }),
      cert: derToPem(forged, 'CERTIFICATE'),
    });
    impostor.on('secureConnection', (s) => s.end('secret-for-the-enclave-only'));
    await new Promise<void>((r) => impostor.listen(0, '127.0.0.1', r));
    t.after(() => impostor.close());
    const forgedAddr = `127.0.0.1:${(impostor.address() as AddressInfo).port}`;
    const binding = await attest(['connect', forgedAddr, '--pcr', `0=${dev.pcr0}`, '--root', dev.root]);
    assert.equal(binding.status, 1);
    assert.equal(failedCheck(binding), 'binding', binding.stderr);
    // And an ordinary self-signed certificate (openssl's), with no document at all.
    const plain = writeSelfSigned(join(dev.dir, 'plain-key.pem'), join(dev.dir, 'plain-cert.pem'));
    const plainServer = tlsServer({ key: plain.key, cert: plain.cert }, (s) => s.end());
    await new Promise<void>((r) => plainServer.listen(0, '127.0.0.1', r));
    t.after(() => plainServer.close());
    const noDoc = await attest([
      'connect',
      `127.0.0.1:${(plainServer.address() as AddressInfo).port}`,
      '--root',
      dev.root,
    ]);
    assert.equal(failedCheck(noDoc), 'certificate', noDoc.stderr);
  },
);

test(
  'attest proxy: curl reaches the app through a verified enclave, and not through a wrong PCR0',
  opts,
  async (t) => {
    const port = 18612;
    const dev = await startAttestedHttp(t, port);
    const startProxy = (pcr0: string) =>
      spawnCloister(t, [
        'attest',
        'proxy',
        '--listen',
        '127.0.0.1:0',
        '--to',
        dev.addr,
        '--pcr',
        `0=${pcr0}`,
        '--root',
        dev.root,
      ]);
    const good = startProxy(dev.pcr0);
    let listen: string | undefined;
    await waitFor(good, 'the proxy to listen', () => {
      listen = /listening on (127\.0\.0\.1:\d+)/.exec(good.err())?.[1];
      return listen !== undefined;
    });
    const reached = await curl(`http://${listen}/`);
    assert.equal(reached.stdout, 'hello from the app\n', reached.stderr);
    await waitFor(good, 'the forward to be reported', () =>
      /forwarding to i-[0-9a-f]+-enc[0-9a-f]+ \(PCR0 /.test(good.err()),
    );

    const bad = startProxy('11'.repeat(48));
    let badListen: string | undefined;
    await waitFor(bad, 'the second proxy to listen', () => {
      badListen = /listening on (127\.0\.0\.1:\d+)/.exec(bad.err())?.[1];
      return badListen !== undefined;
    });
    const refused = await curl(`http://${badListen}/`);
    assert.notEqual(refused.status, 0, 'curl gets no answer');
    assert.equal(refused.stdout, '');
    await waitFor(bad, 'the refusal to be reported', () => /refused: pcr: PCR0 is/.test(bad.err()));
    // The refusing proxy is still serving: a second client gets the same treatment, not a dead port.
    const again = await curl(`http://${badListen}/`);
    assert.match(again.stderr, /Empty reply|reset|closed/i);
    await good.stop();
    await bad.stop();
  },
);

test(
  'renewal: a new certificate before the limit, the app gets SIGHUP and keeps serving from the new files',
  opts,
  async (t) => {
    const port = 18613;
    // The app terminates TLS itself from the files cloister writes, and reloads them on SIGHUP.
    const app = `
const fs=require('fs'),tls=require('tls'),crypto=require('crypto');
const load=()=>({key:fs.readFileSync(process.env.CLOISTER_TLS_KEY_FILE),cert:fs.readFileSync(process.env.CLOISTER_TLS_CERT_FILE)});
const sha=(pem)=>new crypto.X509Certificate(pem).fingerprint256.replace(/:/g,'').toLowerCase();
let files=load();
const server=tls.createServer(files,(s)=>s.end('served by the app\\n'));
process.on('SIGHUP',()=>{files=load();server.setSecureContext(files);console.log('app reloaded '+sha(files.cert));});
server.listen(${port},'127.0.0.1',()=>console.log('app up '+sha(files.cert)));`;
    const dev = await startDev(
      t,
      port,
      'attested_tls:\n  app_files: true\n  reload_signal: SIGHUP\n  max_age_ms: 8000\n',
      app,
    );
    const first = await connectPinned(dev, '--max-age', '1m');
    assert.equal(first.status, 0, first.stderr);
    const firstSha = JSON.parse(first.stdout).certificate.sha256;
    assert.match(
      dev.d.out(),
      new RegExp(`app (up|reloaded) ${firstSha}`),
      'the app serves the certificate cloister wrote',
    );

    // Renewal is due at 3/4 of max_age_ms: wait for the app to have reloaded twice.
    await waitFor(dev.d, 'two reloads', () => (dev.d.out().match(/app reloaded/g) ?? []).length >= 2, 30_000);
    const out = dev.d.out();
    // Order of events: cloister renews (files written), then tells the app, which then reads the new files.
    const renewed = [...out.matchAll(/"sha256":"([0-9a-f]{64})"[^\n]*attested certificate renewed/g)].map(
      (m) => m[1],
    );
    const reloaded = [...out.matchAll(/app reloaded ([0-9a-f]{64})/g)].map((m) => m[1]);
    assert.ok(renewed.length >= 2, out);
    assert.equal(reloaded[0], renewed[0], 'the app loaded the renewed certificate');
    assert.ok(out.indexOf('attested certificate renewed') < out.indexOf('app told to reload its TLS files'));
    assert.ok(out.indexOf('app told to reload its TLS files') < out.indexOf('app reloaded'));
    // Each document was replaced before it was max_age_ms old (renewal is due at 3/4 of it).
    const times = [...out.matchAll(/"documentTime":"([^"]+)"/g)].map((m) => Date.parse(m[1]!));
    assert.ok(times.length >= 3, out);
    for (let i = 1; i < times.length; i++) {
      assert.ok(
        times[i]! - times[i - 1]! < 8000,
        `document ${i} came ${times[i]! - times[i - 1]!} ms after the last`,
      );
    }

    // Still serving, with a document younger than the limit, under the same key.
    const later = await connectPinned(dev, '--max-age', '1m');
    assert.equal(later.status, 0, later.stderr);
    const laterId = JSON.parse(later.stdout);
    assert.notEqual(laterId.certificate.sha256, firstSha);
    assert.equal(laterId.public_key_sha256, JSON.parse(first.stdout).public_key_sha256);
  },
);
