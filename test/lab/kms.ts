// KMS for the lab, prepared on the host before the boot (the guest is too slow to load the AWS SDK):
// the software NSM's root that PID 1 will attest with, and a KMS emulator state holding two keys, one whose
// policy lets only the lab image's PCR0 decrypt and one bound to another PCR0, each with a ciphertext.
// In the guest, scenarios/kms-decrypt.ts serves that state with `cloister kms-emulator` on KMS_PORT.
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateKeyCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { loadOrCreateRoot } from '../../src/nsm/software.ts';

export const KMS_PORT = 18500;
export const KMS_CREDS = { accessKeyId: 'AKIDLABENCLAVE', secretAccessKey: 'lab-enclave-secret' };
export const LAB_PCR0 = '1a'.repeat(48);
export const OTHER_PCR0 = '2b'.repeat(48);
export const KMS_PLAINTEXT = 'sealed for the lab image';

/** results/kms-fixture.json, read by the guest scenario. */
export interface KmsFixture {
  allowed: string;
  denied: string;
  plaintext: string;
}

export async function prepareKms(results: string, bin: string): Promise<void> {
  const nsm = join(results, 'config', 'nsm');
  await loadOrCreateRoot(nsm);
  const emu = spawn(
    bin,
    [
      ...['kms-emulator', '--listen', '127.0.0.1:0', '--state-dir', join(results, 'kms')],
      ...['--attestation-root', join(nsm, 'root.pem')],
      ...['--access-key', KMS_CREDS.accessKeyId, '--secret-key', KMS_CREDS.secretAccessKey],
    ],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, CLOISTER_LOG_LEVEL: 'warn' } },
  );
  try {
    const url = await new Promise<string>((resolve, reject) => {
      let out = '';
      const t = setTimeout(() => reject(new Error(`kms-emulator printed no URL: ${out}`)), 30_000);
      emu.stdout!.on('data', (d: Buffer) => {
        out += d;
        const m = /^(http:\/\/\S+)/m.exec(out);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
      emu.on('exit', (code) => reject(new Error(`kms-emulator exited ${code}: ${out}`)));
    });
    const kms = new KMSClient({ region: 'us-east-1', endpoint: url, credentials: KMS_CREDS, maxAttempts: 1 });
    const seal = async (pcr0: string) => {
      const Policy = JSON.stringify({
        Statement: [
          { Effect: 'Allow', Principal: { AWS: '*' }, Action: ['kms:Encrypt'], Resource: '*' },
          {
            Effect: 'Allow',
            Principal: { AWS: '*' },
            Action: ['kms:Decrypt'],
            Resource: '*',
            Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:PCR0': pcr0 } },
          },
        ],
      });
      const key = (await kms.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;
      const enc = await kms.send(new EncryptCommand({ KeyId: key, Plaintext: Buffer.from(KMS_PLAINTEXT) }));
      return Buffer.from(enc.CiphertextBlob!).toString('base64');
    };
    const fixture: KmsFixture = {
      allowed: await seal(LAB_PCR0),
      denied: await seal(OTHER_PCR0),
      plaintext: KMS_PLAINTEXT,
    };
    kms.destroy();
    writeFileSync(join(results, 'kms-fixture.json'), JSON.stringify(fixture));
  } finally {
    emu.kill('SIGTERM');
  }
}
