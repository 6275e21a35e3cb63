// Attesting KMS proxy on 127.0.0.1:<kms_proxy.listen_port> (placeholder; implemented by the KMS work).
import type { Service, ServiceContext } from '../service.ts';

export async function startKmsProxy(_ctx: ServiceContext): Promise<Service> {
  return { close: async () => {} };
}
