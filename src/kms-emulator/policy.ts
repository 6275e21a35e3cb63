// Key policies: the subset of IAM policy grammar that makes "only this enclave image may decrypt" testable.
// Statements: Effect Allow|Deny, Action/NotAction (kms:* wildcards), Principal (any value: the emulator has
// one caller), Condition with String(Not)Equals[IgnoreCase] / StringLike over request context keys such as
// kms:RecipientAttestation:ImageSha384 and kms:RecipientAttestation:PCR<N>. Explicit Deny wins, then Allow,
// else implicit deny, as in IAM. A request without an attestation document has no such keys, so a positive
// condition on them never matches it.
import { KmsError } from './errors.ts';

const OPERATORS = new Set([
  'StringEquals',
  'StringNotEquals',
  'StringEqualsIgnoreCase',
  'StringNotEqualsIgnoreCase',
  'StringLike',
  'StringNotLike',
]);

interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Action?: string | string[];
  NotAction?: string | string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyDocument {
  Statement: Statement[];
}

function malformed(msg: string): never {
  throw new KmsError('MalformedPolicyDocumentException', msg);
}

function list(v: string | string[] | undefined): string[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** Parses and validates a policy text; throws MalformedPolicyDocumentException naming the problem. */
export function parsePolicy(text: string): PolicyDocument {
  if (typeof text !== 'string' || text.length === 0 || text.length > 32768)
    malformed('Policy must be 1..32768 characters');
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    malformed('The policy is not valid JSON');
  }
  const raw = (doc as { Statement?: unknown })?.Statement;
  const statements = Array.isArray(raw) ? raw : raw && typeof raw === 'object' ? [raw] : null;
  if (!statements || statements.length === 0) malformed('The policy has no Statement');
  statements.forEach((s: Statement, i: number) => {
    if (typeof s !== 'object' || s === null || Array.isArray(s))
      malformed(`Statement[${i}] must be an object`);
    if (s.Effect !== 'Allow' && s.Effect !== 'Deny')
      malformed(`Statement[${i}]: Effect must be Allow or Deny`);
    const actions = [...list(s.Action), ...list(s.NotAction)];
    if (actions.length === 0 || actions.some((a) => typeof a !== 'string')) {
      malformed(`Statement[${i}]: Action or NotAction is required`);
    }
    for (const [op, block] of Object.entries(s.Condition ?? {})) {
      if (!OPERATORS.has(op))
        malformed(`Statement[${i}]: condition operator ${op} is not supported by the emulator`);
      if (!block || typeof block !== 'object')
        malformed(`Statement[${i}]: condition ${op} must be an object`);
      for (const v of Object.values(block)) {
        if (list(v).some((x) => typeof x !== 'string'))
          malformed(`Statement[${i}]: condition values must be strings`);
      }
    }
  });
  return { Statement: statements as Statement[] };
}

function globToRegExp(glob: string, ignoreCase: boolean): RegExp {
  const body = glob
    .replace(/[.+^${}()|[\]\\]/g, '\\$&')
    .replace(/\*/g, '.*')
    .replace(/\?/g, '.');
  return new RegExp(`^${body}$`, ignoreCase ? 'i' : '');
}

function actionMatches(patterns: string[], action: string): boolean {
  // Action names are case-insensitive in IAM.
  return patterns.some((p) => globToRegExp(p, true).test(action));
}

function conditionKeyValue(context: Record<string, string>, key: string): string | undefined {
  const lower = key.toLowerCase();
  for (const [k, v] of Object.entries(context)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

function operatorHolds(op: string, actual: string | undefined, values: string[]): boolean {
  const negated = op.includes('Not');
  if (actual === undefined) return negated; // IAM: a missing key fails positive operators
  const ignoreCase = op.endsWith('IgnoreCase');
  const like = op.startsWith('StringLike') || op.startsWith('StringNotLike');
  const hit = values.some((v) =>
    like
      ? globToRegExp(v, false).test(actual)
      : ignoreCase
        ? v.toLowerCase() === actual.toLowerCase()
        : v === actual,
  );
  return negated ? !hit : hit;
}

function statementApplies(s: Statement, action: string, context: Record<string, string>): boolean {
  if (s.Action !== undefined && !actionMatches(list(s.Action), action)) return false;
  if (s.NotAction !== undefined && actionMatches(list(s.NotAction), action)) return false;
  for (const [op, block] of Object.entries(s.Condition ?? {})) {
    for (const [key, values] of Object.entries(block)) {
      if (!operatorHolds(op, conditionKeyValue(context, key), list(values))) return false;
    }
  }
  return true;
}

export interface PolicyDecision {
  allowed: boolean;
  /** Which statement decided (Sid or index), for the emulator's log. */
  by: string | null;
}

export function evaluatePolicy(
  doc: PolicyDocument,
  action: string,
  context: Record<string, string>,
): PolicyDecision {
  let allow: string | null = null;
  for (const [i, s] of doc.Statement.entries()) {
    if (!statementApplies(s, action, context)) continue;
    const name = s.Sid ?? `Statement[${i}]`;
    if (s.Effect === 'Deny') return { allowed: false, by: name };
    allow ??= name;
  }
  return { allowed: allow !== null, by: allow };
}
