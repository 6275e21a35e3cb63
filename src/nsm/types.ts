// The NSM client interface, shared by the real device (/dev/nsm through the native ioctl) and the
// software NSM used in dev mode and tests.

export type Digest = 'SHA256' | 'SHA384' | 'SHA512';

export interface DescribeNsm {
  version_major: number;
  version_minor: number;
  version_patch: number;
  module_id: string;
  max_pcrs: number;
  locked_pcrs: number[];
  digest: Digest;
}

export interface AttestationRequest {
  user_data?: Uint8Array | null;
  nonce?: Uint8Array | null;
  public_key?: Uint8Array | null;
}

/** An NSM `{"Error": "<code>"}` reply, or a device errno, as a typed error. */
export class NsmError extends Error {
  constructor(
    /** NSM ErrorCode name (InvalidArgument, InvalidIndex, ...) or a device failure (DeviceError). */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'NsmError';
  }
}

export interface Nsm {
  describeNsm(): Promise<DescribeNsm>;
  describePcr(index: number): Promise<{ lock: boolean; data: Uint8Array }>;
  extendPcr(index: number, data: Uint8Array): Promise<Uint8Array>;
  lockPcr(index: number): Promise<void>;
  lockPcrs(range: number): Promise<void>;
  /** Returns the raw COSE_Sign1 attestation document bytes. */
  attestation(req: AttestationRequest): Promise<Uint8Array>;
  getRandom(): Promise<Uint8Array>;
  close(): Promise<void>;
}
