// The attested TLS certificate (src/attested-tls/certificate.ts) and its verifier (verify.ts): built from
// real software-NSM documents, read back, and refused for each way it can be wrong.
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { test } from 'node:test';
import * as asn1js from 'asn1js';
import * as pkijs from 'pkijs';
import { parseCertificate } from '../../../src/attestation/x509.ts';
import {
  ATTESTATION_OID,
  buildAttestedCertificate,
  documentFromCertificate,
  generateAttestedKey,
  isAttestationExtension,
} from '../../../src/attested-tls/certificate.ts';
import { nonceFromServername, nonceServername } from '../../../src/attested-tls/sni-nonce.ts';
import { verifyAttestedCertificate } from '../../../src/attested-tls/verify.ts';
import { AttestationError } from '../../../src/errors.ts';
import { SoftwareNsm } from '../../../src/nsm/software.ts';

const PCR0 = 'ab'.repeat(48);
const HOUR = 3600_000;

async function nsm(now?: () => number): Promise<SoftwareNsm> {
  return SoftwareNsm.open({ stateDir: null, pcrs: { '0': PCR0 }, now });
}

async function attested(
  sw: SoftwareNsm,
  opts: { docKeyFromOther?: boolean; nonce?: Buffer; noPublicKey?: boolean } = {},
) {
  const key = await generateAttestedKey();
  const docKey = opts.docKeyFromOther ? (await generateAttestedKey()).spki : key.spki;
  const document = await sw.client().attestation({
    public_key: opts.noPublicKey ? null : docKey,
    nonce: opts.nonce ?? null,
  });
  const der = await buildAttestedCertificate({
    key,
    document,
    commonName: 'unit-test',
    dnsNames: ['localhost', 'vault.example'],
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + HOUR),
  });
  return { key, document, der };
}

async function refused(p: Promise<unknown>, check: string): Promise<string> {
  let message = '';
  await assert.rejects(p, (e: unknown) => {
    assert.ok(e instanceof AttestationError, String(e));
    assert.equal(e.check, check, `${e.check}: ${e.message}`);
    message = e.message;
    return true;
  });
  return message;
}

test('buildAttestedCertificate: the document rides in a non-critical extension, byte for byte', async () => {
  const sw = await nsm();
  const { der, document, key } = await attested(sw);
  const cert = parseCertificate(der);
  const ext = cert.extensions?.find((e) => isAttestationExtension(e));
  assert.ok(ext, 'the attestation extension is there');
  // The OID as OpenSSL reads it from the DER (asn1js renders arcs above 2^53 its own way).
  const oidDer = new asn1js.ObjectIdentifier({ value: ATTESTATION_OID }).toBER(false);
  assert.equal(Buffer.from(oidDer).toString('hex'), '06146983edd18d93ccf8dab3ab8cc0beedd0af879d64');
  assert.ok(der.includes(Buffer.from(oidDer)), 'the OID is in the certificate as encoded');
  assert.equal(ext.critical, false, 'clients that do not know it can ignore it');
  assert.deepEqual(documentFromCertificate(cert), Buffer.from(document));
  // Node's (OpenSSL's) own reading of it: a P-256 server certificate for localhost, with the enclave's key.
  const x = new X509Certificate(der);
  assert.match(x.subjectAltName ?? '', /DNS:localhost, DNS:vault\.example/);
  assert.equal(x.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
  assert.deepEqual(x.publicKey.export({ type: 'spki', format: 'der' }), key.spki);
  assert.ok(x.verify(x.publicKey), 'self-signed by its own key');
  assert.match(x.subject, /CN=unit-test/);
  assert.deepEqual(x.keyUsage, ['1.3.6.1.5.5.7.3.1'], 'extended key usage: TLS server');
  assert.equal(x.ca, false);
});

test('verifyAttestedCertificate: passes with the right PCR0 and root, and names the key', async () => {
  const sw = await nsm();
  const { der } = await attested(sw);
  const id = await verifyAttestedCertificate(der, {
    rootPem: sw.rootPem,
    pcrs: { 0: PCR0 },
    maxAgeMs: 60_000,
    rejectDebug: true,
  });
  assert.equal(id.attestation.pcrs['0'], PCR0);
  assert.equal(id.attestation.module_id, sw.moduleId);
  assert.equal(
    id.certificate.sha256,
    new X509Certificate(der).fingerprint256.replace(/:/g, '').toLowerCase(),
  );
  assert.match(id.public_key_sha256, /^[0-9a-f]{64}$/);
  assert.ok(id.age_ms >= 0 && id.age_ms < 60_000);
});

test('verifyAttestedCertificate: a wrong PCR0 fails the pcr check', async () => {
  const sw = await nsm();
  const { der } = await attested(sw);
  const msg = await refused(
    verifyAttestedCertificate(der, { rootPem: sw.rootPem, pcrs: { 0: 'cd'.repeat(48) } }),
    'pcr',
  );
  assert.match(msg, /PCR0/);
});

test('verifyAttestedCertificate: a certificate whose key is not the document public_key fails binding', async () => {
  const sw = await nsm();
  const { der } = await attested(sw, { docKeyFromOther: true });
  await refused(verifyAttestedCertificate(der, { rootPem: sw.rootPem }), 'binding');
  const bare = await attested(sw, { noPublicKey: true });
  const msg = await refused(verifyAttestedCertificate(bare.der, { rootPem: sw.rootPem }), 'binding');
  assert.match(msg, /no public_key/);
});

test('verifyAttestedCertificate: a document under another root fails the chain check', async () => {
  const sw = await nsm();
  const other = await nsm();
  const { der } = await attested(sw);
  await refused(verifyAttestedCertificate(der, { rootPem: other.rootPem }), 'chain');
  // And by default (no root given) only AWS's root is trusted.
  await refused(verifyAttestedCertificate(der), 'chain');
});

test('verifyAttestedCertificate: an old document fails the age check; an expired NSM chain fails chain', async () => {
  const tenMinutesAgo = await nsm(() => Date.now() - 10 * 60_000);
  const old = await attested(tenMinutesAgo);
  const msg = await refused(
    verifyAttestedCertificate(old.der, { rootPem: tenMinutesAgo.rootPem, maxAgeMs: 60_000 }),
    'age',
  );
  assert.match(msg, /s old \(at most 60 s\)/);
  // The same document passes without a max age: the test above really is about age.
  await verifyAttestedCertificate(old.der, { rootPem: tenMinutesAgo.rootPem });
  // Documents from 4 hours ago: the NSM's 3-hour leaf has expired, whatever the max age.
  const fourHoursAgo = await nsm(() => Date.now() - 4 * HOUR);
  const expired = await attested(fourHoursAgo);
  await refused(verifyAttestedCertificate(expired.der, { rootPem: fourHoursAgo.rootPem }), 'chain');
});

test('verifyAttestedCertificate: the nonce must be the one asked for', async () => {
  const sw = await nsm();
  const nonce = Buffer.alloc(16, 7);
  const { der } = await attested(sw, { nonce });
  await verifyAttestedCertificate(der, { rootPem: sw.rootPem, nonce });
  await refused(verifyAttestedCertificate(der, { rootPem: sw.rootPem, nonce: Buffer.alloc(16, 8) }), 'nonce');
});

test('verifyAttestedCertificate: no extension, a broken extension, not a certificate: certificate check', async () => {
  const sw = await nsm();
  const { der } = await attested(sw);
  // A certificate without the extension: rebuild the parsed one without it and re-sign.
  const key = await generateAttestedKey();
  const plain = await buildAttestedCertificate({
    key,
    document: Buffer.from('x'),
    commonName: 'plain',
    dnsNames: [],
    notBefore: new Date(),
    notAfter: new Date(Date.now() + HOUR),
  });
  const cert = pkijs.Certificate.fromBER(new Uint8Array(plain));
  cert.extensions = cert.extensions?.filter((e) => !isAttestationExtension(e));
  await cert.sign(key.keys.privateKey, 'SHA-256');
  const stripped = Buffer.from(cert.toSchema(true).toBER(false));
  assert.match(await refused(verifyAttestedCertificate(stripped), 'certificate'), /no attestation document/);
  // An extension that is not an OCTET STRING.
  const broken = pkijs.Certificate.fromBER(new Uint8Array(plain));
  for (const e of broken.extensions ?? []) {
    if (isAttestationExtension(e))
      e.extnValue = new asn1js.OctetString({ valueHex: new asn1js.Integer({ value: 5 }).toBER(false) });
  }
  await broken.sign(key.keys.privateKey, 'SHA-256');
  await refused(verifyAttestedCertificate(Buffer.from(broken.toSchema(true).toBER(false))), 'certificate');
  // A document that is not CBOR: the document's own decode check.
  await refused(verifyAttestedCertificate(plain), 'decode');
  await refused(verifyAttestedCertificate(der.subarray(0, 100)), 'certificate');
});

test('nonce server names: round trip, and anything else asks for no nonce', () => {
  const nonce = Buffer.from('00112233445566778899aabbccddeeff', 'hex');
  const name = nonceServername(nonce);
  assert.equal(name, '00112233445566778899aabbccddeeff.nonce.cloister.invalid');
  assert.deepEqual(nonceFromServername(name), nonce);
  assert.deepEqual(nonceFromServername(name.toUpperCase()), nonce, 'server names are case-insensitive');
  for (const other of [
    undefined,
    '',
    'localhost',
    'vault.example',
    '0011.nonce.cloister.invalid', // too short
    `${'ab'.repeat(32)}.nonce.cloister.invalid`, // 32 bytes: longer than one label
    `x${name}`,
    `${name}.evil`,
  ]) {
    assert.equal(nonceFromServername(other), null, String(other));
  }
  assert.throws(() => nonceServername(Buffer.alloc(8)), RangeError);
});
