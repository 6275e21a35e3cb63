// The egress questions the rest of cloister asks of a manifest, each answered in one place: is egress
// on, and what is its compiled policy (compiled once per manifest and shared by validation, the plan,
// the KMS proxy's start-up checks and `cloister dev`).
import { compilePolicy, type Policy } from '../policy/policy.ts';
import type { Manifest } from './types.ts';

/** Egress runs only when `egress.allow` is present and non-empty (odyn's egress_proxy_uri). */
export function egressEnabled(m: Pick<Manifest, 'egress'>): boolean {
  return (m.egress?.allow?.length ?? 0) > 0;
}

/**
 * The host side runs its egress relay whenever enclaver.yaml has an `egress` key, even with no allow
 * rule (enclaver-run listens on 17002 then too; enclaver-compat.md §1).
 */
export function hostRelayEnabled(m: Pick<Manifest, 'egress'>): boolean {
  return m.egress !== undefined && m.egress !== null;
}

const compiled = new WeakMap<object, Policy>();
const NO_EGRESS = {};

/** The manifest's egress policy, compiled on first use and kept. Throws PolicyError for bad rules. */
export function egressPolicy(m: Pick<Manifest, 'egress'>): Policy {
  const key = m.egress ?? NO_EGRESS;
  let policy = compiled.get(key);
  if (!policy) {
    policy = compilePolicy(m.egress?.allow ?? [], m.egress?.deny ?? []);
    compiled.set(key, policy);
  }
  return policy;
}
