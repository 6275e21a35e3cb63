// cloister kms-emulator --listen 127.0.0.1:PORT --state-dir DIR --attestation-root PEM
//                       [--access-key ID --secret-key SECRET] [--region R] [--account-id N]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createLogger } from '../log/logger.ts';
import { startKmsEmulator } from './server.ts';

const USAGE = `usage: cloister kms-emulator --state-dir DIR [--listen 127.0.0.1:PORT] [--attestation-root root.pem]
                              [--access-key ID --secret-key SECRET] [--region us-east-1] [--account-id 111122223333]
                              [--tls-key key.pem --tls-cert cert.pem]

A local AWS KMS (JSON API) with real cryptography and key policies that test attestation conditions
(kms:RecipientAttestation:ImageSha384 / PCR<N>). Keys persist in --state-dir. Without --access-key the
signature's shape is checked but not its value. Prints the endpoint URL on stdout once listening.
`;

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(text);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new Error(`--listen: expected HOST:PORT, got '${text}'`);
  return { host: (m[1] ?? m[2])!, port };
}

export async function run(argv: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: {
        listen: { type: 'string', default: '127.0.0.1:0' },
        'state-dir': { type: 'string' },
        'attestation-root': { type: 'string' },
        'access-key': { type: 'string' },
        'secret-key': { type: 'string' },
        region: { type: 'string' },
        'account-id': { type: 'string' },
        'tls-key': { type: 'string' },
        'tls-cert': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }));
  } catch (err) {
    process.stderr.write(
      `cloister kms-emulator: ${err instanceof Error ? err.message : String(err)}\n${USAGE}`,
    );
    return 2;
  }
  if (values.help) {
    process.stdout.write(USAGE);
    return 0;
  }
  const stateDir = values['state-dir'] as string | undefined;
  if (!stateDir) {
    process.stderr.write(`cloister kms-emulator: --state-dir is required\n${USAGE}`);
    return 2;
  }
  const accessKey = values['access-key'] as string | undefined;
  const secretKey = values['secret-key'] as string | undefined;
  if ((accessKey === undefined) !== (secretKey === undefined)) {
    process.stderr.write('cloister kms-emulator: --access-key and --secret-key go together\n');
    return 2;
  }
  const tlsKey = values['tls-key'] as string | undefined;
  const tlsCert = values['tls-cert'] as string | undefined;
  if ((tlsKey === undefined) !== (tlsCert === undefined)) {
    process.stderr.write('cloister kms-emulator: --tls-key and --tls-cert go together\n');
    return 2;
  }
  const { host, port } = parseListen(values.listen as string);
  const rootPath = values['attestation-root'] as string | undefined;
  const logger = createLogger({ name: 'kms-emulator' });
  const emulator = await startKmsEmulator({
    stateDir,
    host,
    port,
    attestationRootPem: rootPath ? readFileSync(rootPath, 'utf8') : undefined,
    credentials: accessKey ? [{ accessKeyId: accessKey, secretAccessKey: secretKey! }] : undefined,
    region: values.region as string | undefined,
    accountId: values['account-id'] as string | undefined,
    logger,
    tls: tlsKey ? { key: readFileSync(tlsKey, 'utf8'), cert: readFileSync(tlsCert!, 'utf8') } : undefined,
  });
  process.stdout.write(`${emulator.url}\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGTERM', stop);
    process.once('SIGINT', stop);
  });
  await emulator.close();
  return 0;
}
