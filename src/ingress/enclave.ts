// Enclave side of ingress: vsock <port> -> 127.0.0.1:<port> (placeholder; implemented by the ingress work).
import type { Service, ServiceContext } from '../service.ts';

export async function startIngress(_ctx: ServiceContext): Promise<Service> {
  return { close: async () => {} };
}
