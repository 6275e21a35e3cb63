import { EmulatedTransport } from './emulated.ts';
import type { Transport } from './types.ts';

export { EmulatedTransport } from './emulated.ts';
export * from './types.ts';

export interface TransportOptions {
  kind: 'vsock' | 'emulated';
  /** emulated only: the directory holding `<cid>/<port>.sock`. */
  dir?: string;
  /** emulated only: this side's CID. */
  cid?: number;
}

export async function createTransport(opts: TransportOptions): Promise<Transport> {
  if (opts.kind === 'emulated') {
    if (!opts.dir) throw new Error('emulated transport needs a directory (transport.dir / --vsock-dir)');
    if (opts.cid === undefined) throw new Error("emulated transport needs this side's CID");
    return new EmulatedTransport(opts.dir, opts.cid);
  }
  const { VsockTransport } = await import('./vsock.ts');
  return new VsockTransport();
}
