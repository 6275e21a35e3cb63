// Opens the NSM the settings ask for: /dev/nsm through the native ioctl, or the software NSM.
import type { Settings } from '../config/types.ts';
import { createNsmClient } from './client.ts';
import { openSoftwareNsm } from './software.ts';
import type { Nsm } from './types.ts';

export { createNsmClient } from './client.ts';
export { SoftwareNsm } from './software.ts';
export { type Nsm, NsmError } from './types.ts';

export async function openNsm(settings: Settings['nsm']): Promise<Nsm> {
  switch (settings.kind) {
    case 'device': {
      // Lazy: the native addon is only needed (and only loadable) where /dev/nsm exists.
      const { openNsmDevice } = await import('./device.ts');
      const dev = await openNsmDevice(settings.device_path);
      return createNsmClient(dev.raw, dev.close);
    }
    case 'software':
      return openSoftwareNsm({ stateDir: settings.state_dir, pcrs: settings.pcrs });
    default:
      throw new Error(`nsm.kind: unknown kind '${(settings as { kind: string }).kind}'`);
  }
}
