// Egress policy (placeholder signature; implemented by the egress work).
export interface RuleError {
  list: 'allow' | 'deny';
  index: number;
  message: string;
}

export class PolicyError extends Error {
  constructor(readonly errors: RuleError[]) {
    super(errors.map((e) => `egress.${e.list}[${e.index}]: ${e.message}`).join('; '));
    this.name = 'PolicyError';
  }
}

export interface Decision {
  allowed: boolean;
  /** The rule that decided, as written in the manifest, or null for the default deny. */
  rule: string | null;
  reason: string;
}

export interface Policy {
  check(host: string, port: number): Decision;
}

/** Compiles allow/deny rules; throws PolicyError naming every invalid rule. */
export function compilePolicy(_allow: readonly string[], _deny: readonly string[]): Policy {
  return {
    check: () => ({ allowed: false, rule: null, reason: 'egress policy not implemented yet' }),
  };
}
