// A clock a test moves by hand (for code that takes a Clock, such as src/kms/credentials.ts): now() is the
// real time plus what the test has advanced, and timers fire only when advance() passes their due time.
import type { Clock } from '../../src/kms/credentials.ts';

export class ManualClock implements Clock {
  private offset = 0;
  private nextId = 1;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();

  now(): number {
    return Date.now() + this.offset;
  }

  setTimeout(fn: () => void, ms: number): number {
    const id = this.nextId++;
    this.timers.set(id, { due: this.now() + ms, fn });
    return id;
  }

  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }

  /** Timers not fired yet. */
  pending(): number {
    return this.timers.size;
  }

  /** Moves time forward by `ms` and fires, in due order, every timer that is then due. */
  advance(ms: number): void {
    this.offset += ms;
    const now = this.now();
    const due = [...this.timers].filter(([, t]) => t.due <= now).sort((a, b) => a[1].due - b[1].due);
    for (const [id, t] of due) {
      this.timers.delete(id);
      t.fn();
    }
  }
}
