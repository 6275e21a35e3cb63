// Opens the NSM the settings ask for (placeholder; implemented by the attestation/native work).
import type { Settings } from '../config/types.ts';
import type { Nsm } from './types.ts';

export async function openNsm(_settings: Settings['nsm']): Promise<Nsm> {
  throw new Error('NSM not implemented yet');
}
