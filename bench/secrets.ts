// Boot-time secrets: what they add to the enclave's start. loadSecrets (src/secrets/load.ts) on the real
// path in one process (software NSM, KMS emulator, egress proxy and relay over emulated vsock, the S3 /
// SSM / Secrets Manager stand-ins of test/helpers/aws-fakes.ts), for 1, 5 and 20 inline secrets and one
// secret of each fetched source. Each case: the median wall time of N runs and the CPU time (user +
// system, this whole process: cloister's side and the emulator's) per run. A run includes the RSA-2048
// recipient key (made once per start, in the thread pool) and the credentials.
// Run: node --import tsx bench/secrets.ts [runs-per-case]   (writes bench/results/secrets.json)
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { CreateKeyCommand, EncryptCommand } from '@aws-sdk/client-kms';
import type { SecretSource, SecretSpec } from '../src/config/types.ts';
import { createLogger } from '../src/log/logger.ts';
import type { SecretsPlan } from '../src/plan/index.ts';
import { loadSecrets } from '../src/secrets/load.ts';
import { LazyRamDir } from '../src/system/ram-dir.ts';
import { startFakeAws } from '../test/helpers/aws-fakes.ts';
import { PCR0, PROXY_CREDS, REGION, secretsPlan, startHarness } from '../test/helpers/kms-harness.ts';

const RUNS = Number(process.argv[2] ?? 9);

interface Row {
  name: string;
  wallMs: number;
  cpuMs: number;
  runs: number;
}

const h = await startHarness();
const Policy = JSON.stringify({
  Statement: [
    { Effect: 'Allow', Principal: { AWS: '*' }, Action: 'kms:Encrypt', Resource: '*' },
    {
      Effect: 'Allow',
      Principal: { AWS: '*' },
      Action: 'kms:Decrypt',
      Resource: '*',
      Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:PCR0': PCR0 } },
    },
  ],
});
const keyId = (await h.direct.send(new CreateKeyCommand({ Policy }))).KeyMetadata!.KeyId!;
const ct = Buffer.from(
  (
    await h.direct.send(
      new EncryptCommand({ KeyId: keyId, Plaintext: Buffer.from('a 32-byte database password here') }),
    )
  ).CiphertextBlob!,
);
const fakes = await startFakeAws(
  {
    s3: { 'bench/secret.bin': ct },
    ssm: { '/bench/secret': ct.toString('base64') },
    secretsmanager: { 'bench/secret': { SecretBinary: ct } },
  },
  PROXY_CREDS,
);
const logger = createLogger({ level: 'silent' });

function plan(sources: SecretSource[], file: boolean): SecretsPlan {
  const secrets: SecretSpec[] = sources.map((source, i) => ({
    name: `s${i}`,
    source,
    region: REGION,
    targets: { env: `S${i}`, env_base64: true, file_mode: 0o400, ...(file ? { file: `s${i}` } : {}) },
    required: true,
  }));
  return secretsPlan(h, secrets);
}

async function measure(name: string, p: SecretsPlan): Promise<Row> {
  const walls: number[] = [];
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < RUNS; i++) {
    const ramDir = new LazyRamDir({ path: null, mount: 'never' });
    const t0 = performance.now();
    await loadSecrets(p, { nsm: h.nsm, egress: h.egress, logger, ramDir, env: h.proxyEnv });
    walls.push(performance.now() - t0);
    await ramDir.close();
  }
  const cpu = process.cpuUsage(cpu0);
  walls.sort((a, b) => a - b);
  return {
    name,
    wallMs: walls[Math.floor(walls.length / 2)]!,
    cpuMs: (cpu.user + cpu.system) / 1000 / RUNS,
    runs: RUNS,
  };
}

const inline: SecretSource = { kind: 'inline', ciphertext: ct.toString('base64') };
const rows: Row[] = [];
try {
  await measure('warm-up', plan([inline], false));
  rows.push(await measure('1 inline secret -> env', plan([inline], false)));
  rows.push(await measure('1 inline secret -> env + RAM file', plan([inline], true)));
  rows.push(await measure('5 inline secrets -> env + RAM file', plan(Array(5).fill(inline), true)));
  rows.push(await measure('20 inline secrets -> env + RAM file', plan(Array(20).fill(inline), true)));
  const { urls } = fakes;
  rows.push(
    await measure(
      '1 S3 secret -> env',
      plan([{ kind: 's3', bucket: 'bench', key: 'secret.bin', format: 'binary', endpoint: urls.s3 }], false),
    ),
  );
  rows.push(
    await measure(
      '1 SSM secret -> env',
      plan([{ kind: 'ssm', name: '/bench/secret', endpoint: urls.ssm }], false),
    ),
  );
  rows.push(
    await measure(
      '1 Secrets Manager secret -> env',
      plan([{ kind: 'secretsmanager', id: 'bench/secret', endpoint: urls.secretsmanager }], false),
    ),
  );
} finally {
  await fakes.close();
  await h.close();
}

const width = Math.max(...rows.map((r) => r.name.length));
console.log(`${'case'.padEnd(width)}  wall median    CPU per run   (${RUNS} runs each)`);
for (const r of rows) {
  console.log(
    `${r.name.padEnd(width)}  ${r.wallMs.toFixed(1).padStart(8)} ms  ${r.cpuMs.toFixed(1).padStart(8)} ms`,
  );
}
const per = (rows[3]!.wallMs - rows[1]!.wallMs) / 19;
const perCpu = (rows[3]!.cpuMs - rows[1]!.cpuMs) / 19;
console.log(
  `each secret beyond the first (20 vs 1, env + file): ${per.toFixed(2)} ms wall, ${perCpu.toFixed(2)} ms CPU`,
);
mkdirSync(join(import.meta.dirname, 'results'), { recursive: true });
writeFileSync(
  join(import.meta.dirname, 'results', 'secrets.json'),
  `${JSON.stringify({ date: new Date().toISOString(), node: process.version, runs: RUNS, rows, perExtraSecret: { wallMs: per, cpuMs: perCpu } }, null, 2)}\n`,
);
