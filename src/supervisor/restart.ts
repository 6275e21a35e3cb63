// The restart policy (cloister.yaml app.restart): never | on-failure | always, with exponential
// backoff. Delays double from restart_backoff_ms up to restart_backoff_max_ms. max_restarts counts
// restarts in a row: a run that lasted at least HEALTHY_RUN_MS (or restart_backoff_max_ms if longer)
// counts as healthy and starts a new series (count and delay reset), so a long-lived app that crashes
// once a day is not given up on, while one that dies within seconds of every start is.
import type { Settings } from '../config/types.ts';
import type { AppExit } from './app.ts';

/** A run at least this long is not part of a crash loop. */
export const HEALTHY_RUN_MS = 10_000;

export type RestartDecision =
  | { restart: true; delayMs: number; attempt: number }
  | { restart: false; reason: string };

export class RestartTracker {
  /** Restarts in the current series. */
  private count = 0;

  constructor(private readonly opts: Settings['app']) {}

  get restarts(): number {
    return this.count;
  }

  decide(exit: AppExit): RestartDecision {
    const failed = exit.code !== 0;
    if (this.opts.restart === 'never') return { restart: false, reason: 'restart policy is never' };
    if (this.opts.restart === 'on-failure' && !failed) {
      return { restart: false, reason: 'the app exited with 0 and the restart policy is on-failure' };
    }
    if (exit.ranMs >= Math.max(HEALTHY_RUN_MS, this.opts.restart_backoff_max_ms)) this.count = 0;
    const max = this.opts.max_restarts;
    if (max !== null && this.count >= max) {
      return {
        restart: false,
        reason: `gave up after ${this.count} restart${this.count === 1 ? '' : 's'} in a row`,
      };
    }
    const delayMs = Math.min(
      this.opts.restart_backoff_ms * 2 ** this.count,
      this.opts.restart_backoff_max_ms,
    );
    this.count++;
    return { restart: true, delayMs, attempt: this.count };
  }
}
