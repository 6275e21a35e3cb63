// A clock a test moves by hand (for code that takes a Clock, such as src/kms/credentials.ts): now() starts at
// the real time and then stands still until advance() moves it, which fires the timers then due. Nothing
// depends on how fast the machine is: a slow step cannot push the code under test past a deadline.
import type { Clock } from '../../src/kms/credentials.ts';

export class ManualClock implements Clock {
  private time = Date.now();
  private nextId = 1;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();

  now(): number {
    return this.time;
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
    this.time += ms;
    const now = this.time;
    const due = [...this.timers].filter(([, t]) => t.due <= now).sort((a, b) => a[1].due - b[1].due);
    for (const [id, t] of due) {
      this.timers.delete(id);
      t.fn();
    }
  }
}
