// Opens the NSM the settings ask for: /dev/nsm through the native ioctl, or the software NSM.
// Both are imported on demand: an enclave never loads the software NSM (and its X.509 code), and
// dev mode never loads the native addon.
import type { Settings } from '../config/types.ts';
import { createNsmClient } from './client.ts';
import type { Nsm } from './types.ts';

export { createNsmClient } from './client.ts';
export { type Nsm, NsmError } from './types.ts';

export async function openNsm(settings: Settings['nsm']): Promise<Nsm> {
  switch (settings.kind) {
    case 'device': {
      const { openNsmDevice } = await import('./device.ts');
      const dev = await openNsmDevice(settings.device_path);
      return createNsmClient(dev.raw, dev.close);
    }
    case 'software': {
      const { openSoftwareNsm } = await import('./software.ts');
      return openSoftwareNsm({ stateDir: settings.state_dir, pcrs: settings.pcrs });
    }
    default:
      throw new Error(`nsm.kind: unknown kind '${(settings as { kind: string }).kind}'`);
  }
}
