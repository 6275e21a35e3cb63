// `cloister secrets encrypt --dev`: the KMS emulator of a `cloister dev` state directory, opened on its
// own for the host-side Encrypt (and key set-up), with the dev PCR0 of the given manifest and app: the
// same one `cloister dev -f <manifest> -- <app>` will report, so the key's policy lets that run decrypt.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { loadConfig } from '../config/load.ts';
import { KmsUpstream } from '../kms/upstream.ts';
import { startKmsEmulator } from '../kms-emulator/server.ts';
import { createLogger } from '../log/logger.ts';
import type { OpenDevKms } from '../secrets/cli.ts';
import { devPcrs } from './derive.ts';
import { DEV_ACCOUNT, DEV_ADMIN, devKeyPolicy } from './identity.ts';

export const openDevKms: OpenDevKms = async (o) => {
  const config = loadConfig({ manifestPath: o.manifestPath, settingsPath: o.settingsPath });
  const pcr0 = devPcrs(config, o.app)['0'];
  if (!pcr0) throw new Error('no dev PCR0 for this manifest and app');
  const region = o.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? 'us-east-1';
  const creds = {
    accessKeyId: `AKIDDEVADMIN${randomBytes(4).toString('hex').toUpperCase()}`,
    secretAccessKey: randomBytes(24).toString('base64url'),
  };
  // `cloister dev` keeps the emulator's keys here (its --state-dir /kms).
  const emulator = await startKmsEmulator({
    stateDir: join(o.stateDir, 'kms'),
    credentials: [{ ...creds, principal: DEV_ADMIN }],
    region,
    accountId: DEV_ACCOUNT,
    logger: createLogger({ name: 'kms-emulator', level: 'warn' }),
  });
  const kms = new KmsUpstream({
    endpoints: { [region]: emulator.url },
    egress: null,
    timeoutMs: 10_000,
    credentials: async () => creds,
  });
  return {
    kms,
    region,
    policy: JSON.stringify(devKeyPolicy(pcr0)),
    close: async () => {
      kms.close();
      await emulator.close();
    },
  };
};
