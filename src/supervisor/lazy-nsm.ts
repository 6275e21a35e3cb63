// The NSM handed to services opens on first use, so no service start (and not the app's launch) waits
// for it, and an enclave that never attests never opens /dev/nsm. A failed open is retried on the next
// call rather than cached: a transient error should not disable attestation for the enclave's life.
import type { Settings } from '../config/types.ts';
import type { Nsm } from '../nsm/types.ts';

// Imported on first use too: the software NSM pulls in the X.509 stack, which the app's launch must not wait for.
const openNsm = async (settings: Settings['nsm']): Promise<Nsm> =>
  (await import('../nsm/index.ts')).openNsm(settings);

export function lazyNsm(settings: Settings['nsm'], open = openNsm): Nsm {
  let opening: Promise<Nsm> | undefined;
  const get = (): Promise<Nsm> => {
    if (!opening) {
      opening = open(settings);
      opening.catch(() => {
        opening = undefined;
      });
    }
    return opening;
  };
  return {
    describeNsm: async () => (await get()).describeNsm(),
    describePcr: async (i) => (await get()).describePcr(i),
    extendPcr: async (i, d) => (await get()).extendPcr(i, d),
    lockPcr: async (i) => (await get()).lockPcr(i),
    lockPcrs: async (n) => (await get()).lockPcrs(n),
    attestation: async (req) => (await get()).attestation(req),
    getRandom: async () => (await get()).getRandom(),
    close: async () => {
      const p = opening;
      opening = undefined;
      if (p) await (await p.catch(() => null))?.close();
    },
  };
}
