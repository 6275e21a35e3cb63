import { loadNative, type NativeAddon } from '../native.ts';
import { EmulatedTransport } from './emulated.ts';
import { HybridTransport } from './hybrid.ts';
import { checkNodeInternals } from './node-internals.ts';
import type { Transport } from './types.ts';

export { EmulatedTransport } from './emulated.ts';
export { HybridTransport } from './hybrid.ts';
export * from './types.ts';

export interface TransportOptions {
  kind: 'vsock' | 'emulated' | 'hybrid';
  /** emulated only: the directory holding `<cid>/<port>.sock`. */
  dir?: string;
  /** hybrid only (host side): the VMM's vsock Unix socket (src/transport/hybrid.ts). */
  udsPath?: string;
  /** emulated only: this side's CID. */
  cid?: number;
}

/**
 * The transport a process carries its traffic on. Made before any listener or connection, so it is where
 * the Node-internals self-check runs (once per process): a Node that changed one of them fails here.
 */
export async function createTransport(opts: TransportOptions): Promise<Transport> {
  let addon: NativeAddon | null = null;
  try {
    addon = loadNative();
  } catch (err) {
    // vsock cannot work without it; the emulated transport can (tunnels then use Node streams).
    if (opts.kind === 'vsock') throw err;
  }

  await checkNodeInternals({ addon, vsock: opts.kind === 'vsock' });
  if (opts.kind === 'hybrid') {
    if (!opts.udsPath) throw new Error('hybrid transport needs the VMM vsock socket (--uds-path)');
    return new HybridTransport(opts.udsPath);
  }
  if (opts.kind === 'emulated') {
    if (!opts.dir) throw new Error('emulated transport needs a directory (transport.dir / --vsock-dir)');
    if (opts.cid === undefined) throw new Error("emulated transport needs this side's CID");
    return new EmulatedTransport(opts.dir, opts.cid);
  }
  const { VsockTransport } = await import('./vsock.ts');
  return new VsockTransport();
}
