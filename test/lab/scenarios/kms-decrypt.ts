// KMS over the real path: a Decrypt sent to the KMS proxy (127.0.0.1:9999) goes out with PID 1's
// attestation through the egress proxy, real vsock and the relay to `cloister kms-emulator` on the guest's
// loopback, which releases the key only to the lab image's PCR0; a key bound to another PCR0 is refused.
// The keys and ciphertexts were made on the host before the boot (test/lab/kms.ts).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { cloister, type Scenario } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';

const KMS_PORT = 18500; // test/lab/kms.ts

/** A KMS JSON call as an AWS SDK would send it; the signature is the app's own (the proxy re-signs). */
async function decrypt(blob: string): Promise<{ status: number; body: Record<string, unknown> }> {
  const day = new Date().toISOString().slice(0, 10).replace(/-/g, '');
  const res = await fetch('http://127.0.0.1:9999/', {
    method: 'POST',
    headers: {
      'content-type': 'application/x-amz-json-1.1',
      'x-amz-target': 'TrentService.Decrypt',
      'x-amz-date': `${day}T000000Z`,
      authorization: `AWS4-HMAC-SHA256 Credential=AKIDLABAPP/${day}/us-east-1/kms/aws4_request, SignedHeaders=host;x-amz-date, Signature=${'0'.repeat(64)}`,
    },
    body: JSON.stringify({ CiphertextBlob: blob }),
  });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

export const scenario: Scenario = pid1Scenario({
  title: 'KMS: Decrypt through the proxy and real vsock to the emulator; refused for another PCR0',
  timeoutMs: 120_000,
  async run(ctx) {
    const fixture = JSON.parse(readFileSync(`${ctx.env.results}/kms-fixture.json`, 'utf8')) as {
      allowed: string;
      denied: string;
      plaintext: string;
    };
    const emu = cloister(
      ctx,
      [
        ...['kms-emulator', '--listen', `127.0.0.1:${KMS_PORT}`, '--state-dir', `${ctx.env.results}/kms`],
        ...['--attestation-root', `${ctx.env.results}/config/nsm/root.pem`],
        ...[
          '--access-key',
          process.env.AWS_ACCESS_KEY_ID!,
          '--secret-key',
          process.env.AWS_SECRET_ACCESS_KEY!,
        ],
      ],
      { ...process.env, CLOISTER_LOG_LEVEL: 'warn' },
    );
    await emu.waitFor('the emulator URL', () => emu.out().includes('http://'), 60_000);
    const ok = await decrypt(fixture.allowed);
    assert.equal(ok.status, 200, JSON.stringify(ok.body));
    assert.equal(Buffer.from(String(ok.body.Plaintext), 'base64').toString(), fixture.plaintext);
    const no = await decrypt(fixture.denied);
    assert.equal(no.status, 400, JSON.stringify(no.body));
    assert.match(String(no.body.__type), /AccessDeniedException/);
  },
});
