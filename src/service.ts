// What every in-enclave capability gets when the supervisor starts it, and what it hands back.
import type { Config } from './config/types.ts';
import type { Logger } from './log/logger.ts';
import type { Nsm } from './nsm/types.ts';
import type { RuntimePlan } from './plan/index.ts';
import type { LazyRamDir } from './system/ram-dir.ts';
import type { Transport } from './transport/types.ts';

export interface ServiceContext {
  config: Config;
  transport: Transport;
  logger: Logger;
  /** Started lazily by the supervisor; services must not block on it at startup. */
  nsm: Nsm;
  /**
   * The runtime plan the supervisor built once from `config`. Absent (tests, benchmarks): each service
   * plans its own part from `config` with the same functions.
   */
  plan?: RuntimePlan;
  /**
   * Where files that must stay in RAM go (plan.ramDir, src/system/ram-dir.ts): mounted or created on
   * first use, removed when the services close. Absent in tests that do not need it.
   */
  ramDir?: LazyRamDir;
}

export interface Service {
  /** Environment variables the app should get because this service runs (proxy URLs, endpoints). */
  env?: Record<string, string>;
  /** Stop accepting; resolve when in-flight work has finished (or been cut off). */
  close(): Promise<void>;
}
