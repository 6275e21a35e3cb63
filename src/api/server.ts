// Attestation API on 127.0.0.1:<api.listen_port> (placeholder; implemented by the attestation work).
import type { Service, ServiceContext } from '../service.ts';

export async function startApiServer(_ctx: ServiceContext): Promise<Service> {
  return { close: async () => {} };
}
