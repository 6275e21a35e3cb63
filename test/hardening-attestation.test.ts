// Security review of attestation verification: a document is hostile input (the KMS emulator and the
// host side verify documents they are sent). Whatever is wrong with it, verifyAttestation rejects with
// an AttestationError naming the check, never with a bare parser error.
import assert from 'node:assert/strict';
import { createPrivateKey, sign } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { AttestationError } from '../src/attestation/document.ts';
import { verifyAttestation } from '../src/attestation/verify.ts';
import { exportPkcs8, generateP384, issueCertificate, KU } from '../src/nsm/ca.ts';
import { cborEncode } from '../src/nsm/codec.ts';

const V = join(import.meta.dirname, '../../shared/vectors');

/** A document signed by a self-made leaf (so the signature check passes) with the given cabundle. */
async function forged(cabundle: Buffer[]): Promise<Buffer> {
  const keys = await generateP384();
  const now = Date.now();
  const leaf = await issueCertificate({
    subject: [['CN', 'forged']],
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 3_600_000),
    ca: false,
    keyUsage: [KU.digitalSignature],
  });
  const payload = cborEncode(
    new Map<string, unknown>([
      ['module_id', 'i-forged-enc0123456789abcdef'],
      ['digest', 'SHA384'],
      ['timestamp', now],
      ['pcrs', new Map([[0, Buffer.alloc(48)]])],
      ['certificate', leaf.der],
      ['cabundle', cabundle],
    ]),
  );
  const prot = cborEncode(new Map([[1, -35]]));
  const key = createPrivateKey({ key: await exportPkcs8(keys.privateKey), format: 'der', type: 'pkcs8' });
  const sig = sign('sha384', cborEncode(['Signature1', prot, Buffer.alloc(0), payload]), {
    key,
    dsaEncoding: 'ieee-p1363',
  });
  return cborEncode([prot, new Map(), payload, sig]);
}

test('a cabundle entry that is not a certificate is an AttestationError (format), not a parser crash', async () => {
  const rootPem = readFileSync(join(V, 'aws_nitro_enclaves_root_g1.pem'), 'utf8');
  for (const bad of [
    Buffer.from([0x18, 0x01, 0x41]), // a malformed GeneralizedTime: asn1js throws instead of reporting
    Buffer.from([0x30, 0x03, 0x02, 0x01, 0x01]), // DER, but not a certificate
    Buffer.from([0x30, 0x80]), // truncated
  ]) {
    await assert.rejects(verifyAttestation(await forged([bad]), { rootPem }), (err: Error) => {
      assert.ok(err instanceof AttestationError, `${err.name}: ${err.message}`);
      assert.ok(
        ['format', 'chain'].includes((err as AttestationError).check),
        (err as AttestationError).check,
      );
      return true;
    });
  }
});
