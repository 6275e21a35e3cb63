// A bounded memo for the egress path's per-tunnel work that depends only on its key: the proxy's policy
// decision and relay frame per (host, port), the relay's parsed deny list per list. An app dials the same
// few hosts again and again, and each of these cost tens of µs per CONNECT (BENCHMARKS.md, "Per-connection
// cost"). Bounded, so an app probing many names costs a full recompute at worst, never memory: when full,
// the oldest half is dropped (insertion order), which keeps the recent entries without an LRU's bookkeeping.
export function boundedMemo<K, V>(max: number, compute: (key: K) => V): (key: K) => V {
  const entries = new Map<K, V>();
  return (key) => {
    const hit = entries.get(key);
    if (hit !== undefined) return hit;
    const value = compute(key);
    if (entries.size >= max) {
      let drop = max >> 1;
      for (const k of entries.keys()) {
        if (drop-- <= 0) break;
        entries.delete(k);
      }
    }
    entries.set(key, value);
    return value;
  };
}
