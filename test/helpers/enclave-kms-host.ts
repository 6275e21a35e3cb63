// The host side of the KMS path as real processes, and `cloister enclave` runs against it:
//   app (in `unshare -n`) -> KMS proxy -> egress proxy -> emulated vsock -> egress relay -> `cloister kms-emulator`
// Each enclave run gets its own software-NSM PCR0 (one shared root), so a key bound to one PCR0 can be
// tried from an image with another.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CreateKeyCommand, KMSClient } from '@aws-sdk/client-kms';
import { startEgressRelay } from '../../src/egress/relay.ts';
import { createLogger } from '../../src/log/logger.ts';
import { loadOrCreateRoot } from '../../src/nsm/software.ts';
import { EmulatedTransport } from '../../src/transport/emulated.ts';
import { CID_HOST } from '../../src/transport/types.ts';
import {
  type Captured,
  exitWithin,
  type Scope,
  spawnCaptured,
  spawnCloister,
  waitFor,
} from './fixtures/child.ts';

export const REGION = 'us-east-1';
/**
 * The enclave side's own AWS credentials (what IMDS gives it on EC2): the KMS proxy signs with them; the
 * apps here sign with throwaway keys of their own.
 */
export const HOST_CREDS = { accessKeyId: 'AKIDINTEROPPROXY', secretAccessKey: 'interop-proxy-secret' };
export const canUnshare = spawnSync('unshare', ['-n', 'true']).status === 0;

export interface KmsHost {
  dir: string;
  nsmState: string;
  emulatorUrl: string;
  /** The AWS SDK for JavaScript talking to the emulator with the real credentials (test setup only). */
  kms: KMSClient;
  /** A key whose policy allows Encrypt/DescribeKey to anyone and Decrypt/GenerateDataKey only to `pcr0`. */
  createPcr0Key(pcr0: string): Promise<string>;
  /** Runs `app` under `cloister enclave` in its own network namespace; resolves with its RESULT/ERROR line. */
  runApp(t: Scope, pcr0: string, app: string[], env?: NodeJS.ProcessEnv): Promise<AppOutcome>;
}

export interface AppOutcome {
  /** The parsed RESULT {...} line, or null if the app printed ERROR. */
  result: Record<string, unknown> | null;
  error: string | null;
  enclave: Captured;
}

/** Starts the host side; throws (the test fails, never skips) without `unshare -n`, which runApp needs. */
export async function startKmsHost(t: Scope): Promise<KmsHost> {
  if (!canUnshare) throw new Error('startKmsHost: `cloister enclave` runs in `unshare -n`, which needs root');
  const dir = mkdtempSync(join(tmpdir(), 'cloister-interop-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const nsmState = join(dir, 'nsm');
  await loadOrCreateRoot(nsmState);
  const vsockDir = join(dir, 'vsock');
  const emu = spawnCloister(
    t,
    [
      'kms-emulator',
      ...['--listen', '127.0.0.1:0', '--state-dir', join(dir, 'kms')],
      ...['--attestation-root', join(nsmState, 'root.pem')],
      ...['--access-key', HOST_CREDS.accessKeyId, '--secret-key', HOST_CREDS.secretAccessKey],
    ],
    { env: { ...process.env, CLOISTER_LOG_LEVEL: 'warn' } },
  );
  await waitFor(emu, 'the emulator URL', () => /^http:\/\//m.test(emu.out()), 15_000);
  const emulatorUrl = emu.out().split('\n')[0]!.trim();
  const relay = await startEgressRelay(
    {},
    { transport: new EmulatedTransport(vsockDir, CID_HOST), logger: createLogger({ level: 'silent' }) },
  );
  t.after(() => relay.close());
  const kms = new KMSClient({
    region: REGION,
    endpoint: emulatorUrl,
    credentials: HOST_CREDS,
    maxAttempts: 1,
  });
  t.after(() => kms.destroy());
  let runs = 0;

  return {
    dir,
    nsmState,
    emulatorUrl,
    kms,
    async createPcr0Key(pcr0) {
      const Policy = JSON.stringify({
        Statement: [
          {
            Effect: 'Allow',
            Principal: { AWS: '*' },
            Action: ['kms:Encrypt', 'kms:DescribeKey', 'kms:GenerateRandom'],
            Resource: '*',
          },
          {
            Effect: 'Allow',
            Principal: { AWS: '*' },
            Action: ['kms:Decrypt', 'kms:GenerateDataKey'],
            Resource: '*',
            Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:PCR0': pcr0 } },
          },
        ],
      });
      return (await kms.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;
    },
    async runApp(t, pcr0, app, env = {}) {
      const config = join(dir, `config-${++runs}`);
      mkdirSync(config);
      writeFileSync(
        join(config, 'enclaver.yaml'),
        `version: v1
name: interop
target: interop:latest
sources:
  app: app:latest
egress:
  proxy_port: 10000
  allow:
    - 127.0.0.1
kms_proxy:
  listen_port: 9999
  endpoints:
    ${REGION}: ${emulatorUrl}
`,
      );
      writeFileSync(
        join(config, 'cloister.yaml'),
        `transport:\n  kind: emulated\n  dir: ${vsockDir}\nnsm:\n  kind: software\n  state_dir: ${nsmState}\n  pcrs:\n    "0": "${pcr0}"\n`,
      );
      const enclave = spawnCaptured(
        t,
        'unshare',
        [
          '-n',
          process.execPath,
          'dist/cli.js',
          'enclave',
          '--config-dir',
          config,
          '--no-console',
          '--',
          ...app,
        ],
        {
          env: {
            PATH: process.env.PATH,
            HOME: dir,
            AWS_REGION: REGION,
            AWS_ACCESS_KEY_ID: HOST_CREDS.accessKeyId,
            AWS_SECRET_ACCESS_KEY: HOST_CREDS.secretAccessKey,
            AWS_EC2_METADATA_DISABLED: 'true',
            ...env,
          },
        },
      );
      await waitFor(
        enclave,
        'a RESULT or ERROR line from the app',
        () => /^(RESULT|ERROR) /m.test(enclave.out()),
        60_000,
      );
      const line = enclave
        .out()
        .split('\n')
        .find((l) => /^(RESULT|ERROR) /.test(l))!;
      await enclave.stop();
      await exitWithin(enclave, 10_000);
      if (line.startsWith('RESULT ')) return { result: JSON.parse(line.slice(7)), error: null, enclave };
      return { result: null, error: line.slice(6), enclave };
    },
  };
}
