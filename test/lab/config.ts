// The config the guest's PID 1 (`cloister enclave`) reads, written by the host into the shared results
// directory before the boot: the manifest (egress to the guest's loopback, plain and TLS ingress), the
// settings (software NSM, debug log) and the TLS material for ingress.
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeSelfSigned } from '../helpers/fixtures/tls.ts';
import { KMS_PORT, LAB_PCR0 } from './kms.ts';

/** The results directory as the guest sees it (test/lab/guest/init.sh mounts it there). */
export const GUEST_RESULTS = '/tmp/lab';
export const GUEST_CONFIG = `${GUEST_RESULTS}/config`;

export function writePid1Config(resultsDir: string): void {
  const dir = join(resultsDir, 'config');
  mkdirSync(join(dir, 'tls'), { recursive: true });
  writeSelfSigned(join(dir, 'tls', 'key.pem'), join(dir, 'tls', 'cert.pem'));
  writeFileSync(
    join(dir, 'enclaver.yaml'),
    `version: v1
name: lab
target: lab:latest
sources:
  app: app:latest
egress:
  proxy_port: 10000
  allow:
    - 127.0.0.0/8
  deny:
    - 127.0.0.2
kms_proxy:
  listen_port: 9999
  endpoints:
    us-east-1: http://127.0.0.1:${KMS_PORT}
ingress:
  - listen_port: 8080
  - listen_port: 8443
    tls:
      key_file: ${GUEST_CONFIG}/tls/key.pem
      cert_file: ${GUEST_CONFIG}/tls/cert.pem
`,
  );
  writeFileSync(
    join(dir, 'cloister.yaml'),
    `nsm:
  kind: software
  state_dir: ${GUEST_CONFIG}/nsm
  pcrs:
    "0": "${LAB_PCR0}"
log:
  level: debug
app:
  stop_grace_ms: 5000
`,
  );
}

/** PID 1's command line after the executable (init.sh runs `exec chroot /host $BIN $PID1_ARGS`). */
export function pid1Args(node: string, repo: string): string[] {
  return [
    ...['enclave', '--transport', 'vsock', '--parent-cid', '1', '--config-dir', GUEST_CONFIG],
    ...['--', node, join(repo, 'test', 'lab', 'guest', 'app.ts')],
  ];
}
