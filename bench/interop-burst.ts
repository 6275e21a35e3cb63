// The attested-Decrypt burst from aws-nitro-enclaves-cli issue 413 (30 concurrent Decrypts, some ~7 s
// through AWS's vsock-proxy): 30 concurrent Decrypts from the AWS SDK for Go v2 (test/interop/go
// `burst`), once through cloister — the Go app inside a real `cloister enclave` (own network namespace):
// KMS proxy -> egress proxy -> emulated vsock -> relay -> `cloister kms-emulator` — and once straight to
// the same emulator with a Recipient (the same document KMS would get, made once). One burst each.
// Run as root: node --import tsx bench/interop-burst.ts [concurrency]
import { spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { EncryptCommand } from '@aws-sdk/client-kms';
import { openSoftwareNsm } from '../src/nsm/software.ts';
import { HOST_CREDS, REGION, startKmsHost } from '../test/helpers/enclave-kms-host.ts';
import { goProgram } from '../test/interop/toolchains.ts';

const N = Number(process.argv[2] ?? 30);
const PCR0 = 'e1'.repeat(48);

interface Burst {
  ms: number[];
  wall_ms: number;
}

function summary(path: string, b: Burst) {
  const s = [...b.ms].sort((x, y) => x - y);
  const q = (p: number) => s[Math.min(s.length - 1, Math.ceil(p * s.length) - 1)]!;
  return { path, n: s.length, p50: q(0.5), p99: q(0.99), max: s[s.length - 1]!, wall: b.wall_ms };
}

const cleanups: Array<() => unknown> = [];
try {
  const scope = { after: (fn: () => unknown) => void cleanups.push(fn) };
  const go = goProgram();
  const host = await startKmsHost(scope);
  const keyId = await host.createPcr0Key(PCR0);
  const enc = await host.kms.send(new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.alloc(32, 7) }));
  const blob = Buffer.from(enc.CiphertextBlob!).toString('base64');

  // Straight to the emulator with a Recipient: a document from the same software-NSM root and PCR0.
  const nsm = await openSoftwareNsm({ stateDir: host.nsmState, pcrs: { '0': PCR0 } });
  const spki = generateKeyPairSync('rsa', { modulusLength: 2048 }).publicKey.export({
    type: 'spki',
    format: 'der',
  });
  const doc = Buffer.from(await nsm.attestation({ public_key: spki })).toString('base64');
  await nsm.close();
  const r = spawnSync(go, ['burst', String(N), blob, doc], {
    encoding: 'utf8',
    env: {
      PATH: process.env.PATH,
      AWS_KMS_ENDPOINT: host.emulatorUrl,
      AWS_REGION: REGION,
      BURST_ACCESS_KEY_ID: HOST_CREDS.accessKeyId,
      BURST_SECRET_ACCESS_KEY: HOST_CREDS.secretAccessKey,
    },
  });
  const directLine = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  if (!directLine) throw new Error(`direct burst failed: ${r.stdout}${r.stderr}`);
  const direct: Burst = JSON.parse(directLine.slice(7));

  // Through cloister: the same Go client as the enclave's app, throwaway credentials, no Recipient.
  const via = await host.runApp(scope, PCR0, [go, 'burst', String(N), blob]);
  if (!via.result)
    throw new Error(`burst through cloister failed: ${via.error}\n${via.enclave.err().slice(-3000)}`);

  const rows = [
    summary('direct to emulator + Recipient', direct),
    summary('through cloister', via.result as unknown as Burst),
  ];
  console.log(`\n${N} concurrent Decrypts (AWS SDK for Go v2), one burst each, ms`);
  console.log('| Path | n | p50 | p99 | max | burst wall |');
  console.log('|---|---|---|---|---|---|');
  for (const x of rows)
    console.log(
      `| ${x.path} | ${x.n} | ${x.p50.toFixed(1)} | ${x.p99.toFixed(1)} | ${x.max.toFixed(1)} | ${x.wall.toFixed(1)} |`,
    );
  mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
  writeFileSync(
    join(import.meta.dirname, 'results', 'interop-burst.json'),
    `${JSON.stringify({ date: new Date().toISOString(), node: process.version, concurrency: N, rows, raw: { direct, via: via.result } }, null, 2)}\n`,
  );
} finally {
  for (const c of cleanups.reverse()) await c();
}
