// Assembles the KMS path from the exported start functions, all on loopback and Unix sockets:
//   client -> KMS proxy -> egress proxy (enclave side) -> emulated vsock -> egress relay (host) -> KMS emulator
// The software NSM signs the attestation documents; the emulator trusts its root.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { KMSClient } from '@aws-sdk/client-kms';
import {
  type Config,
  DEFAULT_SETTINGS,
  type Manifest,
  type SecretSpec,
  type Settings,
} from '../../src/config/types.ts';
import { startEgressProxy } from '../../src/egress/proxy.ts';
import { startEgressRelay } from '../../src/egress/relay.ts';
import type { EgressProxy } from '../../src/kms/egress.ts';
import { type KmsProxyDeps, startKmsProxy } from '../../src/kms/proxy.ts';
import {
  type EmulatorCredentials,
  type KmsEmulator,
  startKmsEmulator,
} from '../../src/kms-emulator/server.ts';
import { createLogger, type Logger } from '../../src/log/logger.ts';
import { openSoftwareNsm } from '../../src/nsm/software.ts';
import type { Nsm } from '../../src/nsm/types.ts';
import type { SecretsPlan } from '../../src/plan/index.ts';
import { type KmsPlan, planEgress, planKms } from '../../src/plan/index.ts';
import { EmulatedTransport } from '../../src/transport/emulated.ts';
import { CID_HOST } from '../../src/transport/types.ts';
import { freePort } from './fixtures/ports.ts';

export const PCR0 = 'c1'.repeat(48);
export const PROXY_CREDS = {
  accessKeyId: 'AKIDCLOISTERPROXY',
  secretAccessKey: 'proxy-secret-key-for-tests',
};
export const REGION = 'us-east-1';

export { freePort };

export interface Harness {
  dir: string;
  nsm: Nsm & { rootPem: string };
  emulator: KmsEmulator;
  proxyUrl: string;
  /** An SDK client that talks to the proxy with throwaway credentials. */
  viaProxy: KMSClient;
  /** An SDK client that talks to the emulator directly with the real credentials. */
  direct: KMSClient;
  /** What the KMS proxy was started with: a second proxy (bench/kms-ab.ts) can start on the same path. */
  kmsPlan: KmsPlan;
  config: Config;
  logger: Logger;
  egress: EgressProxy | null;
  /** The KMS proxy's credential environment. */
  proxyEnv: NodeJS.ProcessEnv;
  close(): Promise<void>;
}

export interface HarnessOptions {
  /** Use the egress path (default true); false = the KMS proxy dials the emulator directly. */
  egress?: boolean;
  emulatorCredentials?: EmulatorCredentials[] | ((id: string) => EmulatorCredentials | undefined);
  /** Environment for the proxy's credential chain (default: PROXY_CREDS as AWS_ACCESS_KEY_ID/...). */
  proxyEnv?: NodeJS.ProcessEnv;
  settings?: Partial<Settings['kms']>;
  /** Extra manifest egress allow rules. */
  allow?: string[];
  /** Override the endpoint written in kms_proxy.endpoints[REGION]. */
  endpoint?: (emulatorUrl: string) => string;
  proxyOptions?: Partial<KmsProxyDeps>;
  /** Serve the emulator over HTTPS with this key/certificate. */
  emulatorTls?: { key: string; cert: string };
  /** Collect every log line (at trace level) here instead of discarding them. */
  logLines?: string[];
}

export async function startHarness(opts: HarnessOptions = {}): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'cloister-kms-'));
  const lines = opts.logLines;
  const logger = lines
    ? createLogger({ level: 'trace', destination: { write: (l: string) => void lines.push(l) } })
    : createLogger({ level: process.env.KMS_TEST_LOG ?? 'silent' });
  const closers: Array<() => Promise<void>> = [];
  try {
    const nsm = await openSoftwareNsm({ stateDir: join(dir, 'nsm'), pcrs: { '0': PCR0 } });
    closers.push(() => nsm.close());
    const emulator = await startKmsEmulator({
      stateDir: join(dir, 'kms-state'),
      attestationRootPem: nsm.rootPem,
      credentials: opts.emulatorCredentials ?? [PROXY_CREDS],
      logger,
      tls: opts.emulatorTls,
    });
    closers.push(() => emulator.close());
    const useEgress = opts.egress ?? true;
    const vsockDir = join(dir, 'vsock');
    const manifest: Manifest = {
      version: 'v1',
      name: 'kms-test',
      target: 'kms-test:latest',
      sources: { app: 'app:latest' },
      kms_proxy: {
        listen_port: 0,
        endpoints: { [REGION]: opts.endpoint ? opts.endpoint(emulator.url) : emulator.url },
      },
      ...(useEgress ? { egress: { proxy_port: 0, allow: ['127.0.0.1', ...(opts.allow ?? [])] } } : {}),
    };
    const settings: Settings = {
      ...DEFAULT_SETTINGS,
      transport: { kind: 'emulated', dir: vsockDir, enclave_cid: 16, parent_cid: 2 },
      kms: { ...DEFAULT_SETTINGS.kms, ...opts.settings },
    };
    const config: Config = { manifestPath: join(dir, 'enclaver.yaml'), configDir: dir, manifest, settings };
    const enclaveTransport = new EmulatedTransport(vsockDir, 16);
    let egressPort: number | undefined;
    if (useEgress) {
      const relay = await startEgressRelay(
        {},
        { transport: new EmulatedTransport(vsockDir, CID_HOST), logger },
      );
      closers.push(() => relay.close());
      const egress = await startEgressProxy(planEgress(config)!, { transport: enclaveTransport, logger });
      closers.push(() => egress.close());
      egressPort = egress.port;
    }
    const kmsPlan = planKms(config)!;
    const egress = egressPort === undefined ? null : { host: '127.0.0.1', port: egressPort };
    const proxyEnv = opts.proxyEnv ?? {
      AWS_ACCESS_KEY_ID: PROXY_CREDS.accessKeyId,
      AWS_SECRET_ACCESS_KEY: PROXY_CREDS.secretAccessKey,
      AWS_EC2_METADATA_DISABLED: 'true',
    };
    const proxy = await startKmsProxy(kmsPlan, {
      logger,
      nsm,
      egress,
      ...opts.proxyOptions,
      credentials: { env: proxyEnv, ...opts.proxyOptions?.credentials },
    });
    closers.push(() => proxy.close());
    const proxyUrl = proxy.env!.AWS_KMS_ENDPOINT!;
    const viaProxy = new KMSClient({
      region: REGION,
      endpoint: proxyUrl,
      credentials: { accessKeyId: 'anything', secretAccessKey: 'anything' },
      maxAttempts: 1,
    });
    const direct = new KMSClient({
      region: REGION,
      endpoint: emulator.url,
      credentials: PROXY_CREDS,
      maxAttempts: 1,
    });
    closers.push(async () => {
      viaProxy.destroy();
      direct.destroy();
    });
    return {
      dir,
      nsm,
      emulator,
      proxyUrl,
      viaProxy,
      direct,
      kmsPlan,
      config,
      logger,
      egress,
      proxyEnv,
      close: async () => {
        for (const c of closers.reverse()) await c().catch(() => {});
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    for (const c of closers.reverse()) await c().catch(() => {});
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}

/** Env for child clients (aws CLI, boto3): throwaway credentials, no config files, no IMDS. */
export function clientEnv(dir: string): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: dir,
    AWS_ACCESS_KEY_ID: 'AKIDANYTHING',
    AWS_SECRET_ACCESS_KEY: 'anything',
    AWS_DEFAULT_REGION: REGION,
    AWS_REGION: REGION,
    AWS_CONFIG_FILE: join(dir, 'no-aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'no-aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true',
    AWS_PAGER: '',
    NO_PROXY: '127.0.0.1,localhost',
  };
}

/** A boot-time secrets plan (src/secrets/) whose KMS is the harness's emulator. */
export function secretsPlan(h: Harness, secrets: SecretSpec[]): SecretsPlan {
  return {
    secrets,
    kmsEndpoints: { [REGION]: h.emulator.url },
    timeoutMs: 10_000,
    readyWaitMs: 10_000,
    owner: { uid: null, gid: null },
  };
}
