// An https KMS endpoint (an authority in kms_proxy.endpoints, as in Enclaver): TLS runs inside the
// egress CONNECT tunnel and is verified — a certificate from NODE_EXTRA_CA_CERTS is trusted, a
// self-signed stranger is refused with a clear error.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import { defaultPolicy } from '../../../src/kms-emulator/actions.ts';
import { selfSignedIn } from '../../helpers/fixtures/tls.ts';
import { startHarness } from '../../helpers/kms-harness.ts';

test('https endpoints: TLS through the tunnel, verified against NODE_EXTRA_CA_CERTS', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kms-tls-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const trusted = selfSignedIn(dir, 'trusted');
  const stranger = selfSignedIn(dir, 'stranger');
  // Read once, at the proxy's first TLS connection in this process.
  process.env.NODE_EXTRA_CA_CERTS = trusted.certPath;
  const authority = (url: string) => url.replace('https://127.0.0.1', 'localhost');

  const good = await startHarness({ emulatorTls: trusted, allow: ['localhost'], endpoint: authority });
  t.after(() => good.close());
  const key = good.emulator.store.createKey('tls', defaultPolicy(good.emulator.store.accountId));
  const enc = await good.viaProxy.send(
    new EncryptCommand({ KeyId: key.keyId, Plaintext: Buffer.from('over tls') }),
  );
  const dec = await good.viaProxy.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
  assert.equal(Buffer.from(dec.Plaintext!).toString(), 'over tls');

  const bad = await startHarness({ emulatorTls: stranger, allow: ['localhost'], endpoint: authority });
  t.after(() => bad.close());
  await assert.rejects(
    bad.viaProxy.send(new EncryptCommand({ KeyId: key.keyId, Plaintext: Buffer.from('x') })),
    (err: Error & { $metadata: { httpStatusCode: number } }) => {
      assert.equal(err.name, 'KMSInternalException');
      assert.equal(err.$metadata.httpStatusCode, 502);
      assert.match(err.message, /TLS with localhost failed: .*self[- ]signed/i);
      return true;
    },
  );
});
