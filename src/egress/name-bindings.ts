// Which allowed names the DNS stub returned each IPv4 address for, and until when (transparent egress).
// A transparent connection arrives with an address only; the names bound to it are what a name rule is
// checked against, each with the connection's port, so an address opens only the ports its own names'
// rules allow, and only while the answer that carried it is fresh (its TTL plus a grace for the
// connect that follows a lookup).
//
// Bounded: at most `maxAddresses` addresses are kept; a full table drops expired bindings first, then
// the oldest addresses (an app resolving many names costs a re-lookup, never memory).

export interface NameBindingsOptions {
  /** Most addresses kept (default 4096). */
  maxAddresses?: number;
  /** Seconds a binding outlives the TTL the app was given (default 60). */
  graceS?: number;
  /** Clock in ms (tests pass a manual one). */
  now?: () => number;
}

export class NameBindings {
  /** address -> (name -> expiry in ms); Map order is insertion order, oldest first. */
  private readonly byAddress = new Map<string, Map<string, number>>();
  private readonly max: number;
  private readonly graceMs: number;
  private readonly now: () => number;

  constructor(opts: NameBindingsOptions = {}) {
    this.max = opts.maxAddresses ?? 4096;
    this.graceMs = (opts.graceS ?? 60) * 1000;
    this.now = opts.now ?? Date.now;
  }

  /** Records that `addresses` were returned for `name` with this TTL (seconds). */
  bind(name: string, addresses: readonly string[], ttlS: number): void {
    const until = this.now() + ttlS * 1000 + this.graceMs;
    for (const address of addresses) {
      let names = this.byAddress.get(address);
      if (names)
        this.byAddress.delete(address); // re-inserted below: now the newest
      else {
        if (this.byAddress.size >= this.max) this.evict();
        names = new Map();
      }
      names.set(name, Math.max(until, names.get(name) ?? 0));
      this.byAddress.set(address, names);
    }
  }

  /** The names `address` is bound to now (expired bindings are dropped on the way). */
  namesFor(address: string): string[] {
    const names = this.byAddress.get(address);
    if (!names) return [];
    const now = this.now();
    const out: string[] = [];
    for (const [name, until] of names) {
      if (until > now) out.push(name);
      else names.delete(name);
    }
    if (names.size === 0) this.byAddress.delete(address);
    return out;
  }

  /** Addresses held (expired ones included until they are looked at or evicted). */
  get size(): number {
    return this.byAddress.size;
  }

  private evict(): void {
    const now = this.now();
    for (const [address, names] of this.byAddress) {
      for (const [name, until] of names) if (until <= now) names.delete(name);
      if (names.size === 0) this.byAddress.delete(address);
    }
    // Still full: drop the oldest quarter (insertion order), so eviction is not paid on every bind.
    let drop = this.byAddress.size >= this.max ? Math.max(1, this.max >> 2) : 0;
    for (const address of this.byAddress.keys()) {
      if (drop-- <= 0) break;
      this.byAddress.delete(address);
    }
  }
}
