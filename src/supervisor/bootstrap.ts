// Enclave bootstrap (docs/reference/enclaver.md, "Bootstrap"): an enclave boots with `lo` down and nothing
// but the NSM to seed its RNG from. Same log lines as odyn, so operators' log searches keep working.
import type { Logger } from '../log/logger.ts';
import type { Nsm } from '../nsm/types.ts';

export interface SystemCalls {
  bringUpLoopback(): void;
  seedEntropy(bytes: Uint8Array): { credited: boolean };
}

export async function bootstrap(sys: SystemCalls, nsm: Nsm, logger: Logger): Promise<void> {
  logger.info('Bringing up loopback interface');
  try {
    sys.bringUpLoopback();
  } catch (err) {
    throw new Error(`bootstrap: cannot bring up the loopback interface: ${(err as Error).message}`);
  }
  logger.info('Seeding /dev/random with entropy from nsm device');
  let bytes: Uint8Array;
  try {
    bytes = await nsm.getRandom();
  } catch (err) {
    throw new Error(`bootstrap: cannot get random bytes from the NSM: ${(err as Error).message}`);
  }
  try {
    const { credited } = sys.seedEntropy(bytes);
    logger.debug({ bytes: bytes.length, credited }, 'entropy added to the kernel pool');
  } catch (err) {
    throw new Error(`bootstrap: cannot add entropy to /dev/random: ${(err as Error).message}`);
  }
  logger.info('Enclave initialized');
}
