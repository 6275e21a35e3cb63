// The boot-time secrets step of the start (src/secrets/): run after the egress proxy (every fetch and
// KMS call goes through it) and before ingress (a TLS key may be one of them) and the app. A failure of
// a required secret is a failed start, and the restart policy applies to it as to an app that exited
// with 1: with `never` the start is fatal at once; otherwise the secrets are tried again after the
// backoff (status `restarting`, with the error) until they are ready or max_restarts gives up.
import type { Settings } from '../config/types.ts';
import { delayUnless } from '../deadline.ts';
import { InterruptedError, isSecretError } from '../errors.ts';
import type { Logger } from '../log/logger.ts';
import type { SecretsPlan } from '../plan/index.ts';
import { loadSecrets, type ReadySecrets, type SecretsDeps } from '../secrets/load.ts';
import { RestartTracker } from './restart.ts';
import type { AppStatus } from './status.ts';

export interface BootSecretsOptions {
  plan: SecretsPlan;
  deps: SecretsDeps;
  app: Settings['app'];
  logger: Logger;
  /** Reports `restarting` on the status stream. */
  setStatus(s: AppStatus): void;
  /** Resolves when cloister is asked to stop: no more attempts. */
  stopRequested: Promise<void>;
}

export async function loadBootSecrets(o: BootSecretsOptions): Promise<ReadySecrets> {
  const tracker = new RestartTracker(o.app);
  let stopping = false;
  void o.stopRequested.then(() => {
    stopping = true;
  });
  for (;;) {
    try {
      return await loadSecrets(o.plan, o.deps);
    } catch (err) {
      if (!isSecretError(err) || stopping) throw err;
      // A failed start counts as a run that exited with 1 at once.
      const d = tracker.decide({ code: 1, signal: null, signalName: null, ranMs: 0 });
      if (!d.restart) throw err;
      o.logger.warn(
        { code: err.code, secret: err.secret, reason: err.reason, attempt: d.attempt, delayMs: d.delayMs },
        `boot-time secrets not ready; trying again in ${d.delayMs} ms (restart ${d.attempt})`,
      );
      o.setStatus({ status: 'restarting', error: err.message, restarts: d.attempt, delay_ms: d.delayMs });
      await delayUnless(d.delayMs, o.stopRequested);
      if (stopping) throw new InterruptedError('stopped while waiting to try the boot-time secrets again');
    }
  }
}
