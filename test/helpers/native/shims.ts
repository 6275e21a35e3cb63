// Builds the test-only LD_PRELOAD shims (vsock_shim.c: AF_VSOCK connect and bind without a vsock peer;
// nsm_shim.c: /dev/nsm without an NSM) into `dir`, and returns the LD_PRELOAD value naming them.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

export type Shim = 'vsock_shim' | 'nsm_shim';

export function buildShims(dir: string, names: Shim[] = ['vsock_shim', 'nsm_shim']): string {
  return names
    .map((name) => {
      const so = join(dir, `${name}.so`);
      execFileSync('cc', [
        '-shared',
        '-fPIC',
        '-O2',
        '-Wall',
        '-o',
        so,
        `test/helpers/native/${name}.c`,
        '-ldl',
      ]);
      return so;
    })
    .join(' ');
}
