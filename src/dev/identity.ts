// Who the KMS emulator sees in dev mode, and the key policy dev mode uses: shared by `cloister dev` (the
// banner, the enclave side's credentials) and `cloister secrets encrypt --dev` (the key it creates).
// The enclave side's credentials are a session of an instance role, as on EC2, so the key policy names a
// role and the emulator enforces it against the KMS proxy's and the boot-time secrets' calls.
import { keyPolicy } from '../key-policy/generate.ts';

export const DEV_ACCOUNT = '111122223333';
export const DEV_ROLE = `arn:aws:iam::${DEV_ACCOUNT}:role/cloister-dev-enclave`;
export const DEV_ROLE_SESSION = `arn:aws:sts::${DEV_ACCOUNT}:assumed-role/cloister-dev-enclave/i-cloister-dev`;
/** The administrator: the dev account (what `cloister secrets encrypt --dev` signs as). */
export const DEV_ADMIN = `arn:aws:iam::${DEV_ACCOUNT}:root`;

/** The policy `cloister dev` prints (and `cloister kms policy --lint` accepts): Decrypt only with PCR0. */
export function devKeyPolicy(pcr0: string): object {
  return keyPolicy({ role: DEV_ROLE, admin: DEV_ADMIN, pcrs: { 0: pcr0 } });
}
