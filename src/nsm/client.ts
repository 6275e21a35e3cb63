// The Nsm interface over any raw CBOR transport: the /dev/nsm ioctl (src/nsm/device.ts) or the
// software NSM's request handler. All protocol knowledge lives in codec.ts.
import { decodeResponse, encodeRequest, type NsmRequest, type NsmResponse } from './codec.ts';
import { type AttestationRequest, type DescribeNsm, type Nsm, NsmError } from './types.ts';

export type RawNsm = (req: Uint8Array) => Promise<Uint8Array>;

/**
 * Build an Nsm over `raw`. `onClose` runs once on close() (e.g. closing the device fd); calls after
 * close() fail with NsmError('Closed').
 */
export function createNsmClient(raw: RawNsm, onClose?: () => Promise<void>): Nsm {
  let closed = false;

  async function call<T extends NsmResponse['type']>(
    req: NsmRequest,
    expect: T,
  ): Promise<Extract<NsmResponse, { type: T }>> {
    if (closed) throw new NsmError('Closed', 'the NSM client is closed');
    const res = decodeResponse(await raw(encodeRequest(req)));
    if (res.type === 'Error') throw new NsmError(res.code, `NSM ${req.type} failed: ${res.code}`);
    if (res.type !== expect) {
      throw new NsmError('InvalidResponse', `NSM answered ${req.type} with ${res.type}`);
    }
    return res as Extract<NsmResponse, { type: T }>;
  }

  return {
    async describeNsm(): Promise<DescribeNsm> {
      const { type: _type, ...d } = await call({ type: 'DescribeNSM' }, 'DescribeNSM');
      return d;
    },
    async describePcr(index) {
      const r = await call({ type: 'DescribePCR', index }, 'DescribePCR');
      return { lock: r.lock, data: r.data };
    },
    async extendPcr(index, data) {
      return (await call({ type: 'ExtendPCR', index, data }, 'ExtendPCR')).data;
    },
    async lockPcr(index) {
      await call({ type: 'LockPCR', index }, 'LockPCR');
    },
    async lockPcrs(range) {
      await call({ type: 'LockPCRs', range }, 'LockPCRs');
    },
    async attestation(req: AttestationRequest) {
      const r = await call(
        {
          type: 'Attestation',
          user_data: req.user_data ?? null,
          nonce: req.nonce ?? null,
          public_key: req.public_key ?? null,
        },
        'Attestation',
      );
      return r.document;
    },
    async getRandom() {
      return (await call({ type: 'GetRandom' }, 'GetRandom')).random;
    },
    async close() {
      if (closed) return;
      closed = true;
      await onClose?.();
    },
  };
}
