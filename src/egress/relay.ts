// Host-side egress relay on vsock 17002 (placeholder; implemented by the egress work).
import type { Logger } from '../log/logger.ts';
import type { Transport } from '../transport/types.ts';

export interface RelayOptions {
  transport: Transport;
  logger: Logger;
  /** Optional host-side policy rules (the enclave's policy is the one that counts). */
  allow?: string[];
  deny?: string[];
  connectTimeoutMs?: number;
}

export async function startEgressRelay(_opts: RelayOptions): Promise<{ close(): Promise<void> }> {
  return { close: async () => {} };
}
