// In-enclave egress proxy on 127.0.0.1:<egress.proxy_port> (placeholder; implemented by the egress work).
import type { Service, ServiceContext } from '../service.ts';

export async function startEgressProxy(_ctx: ServiceContext): Promise<Service> {
  return { env: {}, close: async () => {} };
}
