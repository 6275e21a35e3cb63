// The server side of bench/attested-tls.ts as its own process, so its CPU time is its own: enclave ingress
// (emulated vsock) with two TLS ports, one with a plain self-signed P-256 certificate and one with the
// attested certificate (software NSM), host ingress in front of both on loopback, and an app that accepts
// and closes. Prints one JSON line {plain, attested, rootPem, pcr0, certificateBytes} and serves until
// killed (bench/attested-tls.ts reads its CPU time from /proc).
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import { generateAttestedKey } from '../src/attested-tls/certificate.ts';
import { startAttestedTls } from '../src/attested-tls/issuer.ts';
import { derToPem } from '../src/encoding/pem.ts';
import { startIngress } from '../src/ingress/enclave.ts';
import { startHostIngress } from '../src/ingress/host.ts';
import { createLogger } from '../src/log/logger.ts';
import { EKU_SERVER_AUTH, issueCertificate, KU } from '../src/nsm/ca.ts';
import { SoftwareNsm } from '../src/nsm/software.ts';
import { EmulatedTransport } from '../src/transport/emulated.ts';
import { CID_HOST } from '../src/transport/types.ts';

const [plainPort, attestedPort] = [19711, 19712];
const logger = createLogger({ level: 'warn' });
const dir = mkdtempSync(join(tmpdir(), 'cloister-bench-atls-'));
process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
const pcr0 = 'ab'.repeat(48);
const sw = await SoftwareNsm.open({ stateDir: null, pcrs: { '0': pcr0 } });

// The app: accepts and closes (the benchmark measures handshakes, not the app).
for (const port of [plainPort, attestedPort]) {
  const app = createServer((s) => s.end());
  await new Promise<void>((r) => app.listen(port, '127.0.0.1', r));
}

// The plain port's certificate: the same key type and issuer code, without the document.
const key = await generateAttestedKey();
const plainCert = await issueCertificate({
  subject: [['CN', 'plain']],
  publicKey: key.keys.publicKey,
  signingKey: key.keys.privateKey,
  notBefore: new Date(Date.now() - 60_000),
  notAfter: new Date(Date.now() + 3600_000),
  ca: false,
  keyUsage: [KU.digitalSignature],
  hash: 'SHA-256',
  dnsNames: ['localhost'],
  extendedKeyUsage: [EKU_SERVER_AUTH],
});
const { KeyObject } = await import('node:crypto');
const plainContext = createSecureContext({
  key: KeyObject.from(key.keys.privateKey).export({ type: 'pkcs8', format: 'pem' }),
  cert: derToPem(plainCert.der, 'CERTIFICATE'),
});

const attestedTls = await startAttestedTls(
  { maxAgeMs: 600_000, commonName: 'bench', dnsNames: ['localhost'], files: null },
  { nsm: sw.client(), logger },
);
const vsockDir = join(dir, 'vsock');
await startIngress(
  {
    ports: [
      { port: plainPort, secureContext: plainContext },
      { port: attestedPort, secureContext: null, attestedTls: true },
    ],
    proxyProtocol: false,
    upstreamRetryMs: 1000,
  },
  { transport: new EmulatedTransport(vsockDir, 16), logger, attestedTls },
);
const host = await startHostIngress(
  {
    ports: [
      { enclavePort: plainPort, hostPort: 0 },
      { enclavePort: attestedPort, hostPort: 0 },
    ],
    listenAddress: '127.0.0.1',
  },
  { transport: new EmulatedTransport(vsockDir, CID_HOST), enclaveCid: 16, logger },
);
process.stdout.write(
  `${JSON.stringify({
    plain: host.addresses().get(plainPort)!.port,
    attested: host.addresses().get(attestedPort)!.port,
    rootPem: sw.rootPem,
    pcr0,
    certificateBytes: { plain: plainCert.der.length, attested: attestedTls.current().der.length },
  })}\n`,
);
