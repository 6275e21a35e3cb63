// Key policies: the subset of IAM policy grammar that makes "only this enclave image may decrypt" testable,
// evaluated the way KMS evaluates a key policy. The emulator enforces it on every call and
// `cloister kms policy --lint` asks the same code about synthetic requests, so the two cannot disagree.
//
// Statements: Effect Allow|Deny; Action/NotAction (`kms:*` wildcards, case-insensitive); Principal/NotPrincipal
// ("*", an account id or `arn:…:iam::ACCOUNT:root` = every principal of that account, a role = the role and
// its assumed-role sessions, anything else exactly); Condition blocks: every operator and every key in a
// statement must hold (AND), any value of a key may match (OR). Operators: String(Not)Equals[IgnoreCase],
// String(Not)Like, Arn(Not)Equals/Arn(Not)Like, Bool, each also as ...IfExists, and Null. Explicit Deny
// wins, then Allow, else implicit deny, as in IAM. A request without an attestation document has no
// kms:RecipientAttestation:* keys, so a positive condition on them never matches it (an ...IfExists one does:
// that is the leak the linter looks for).
import { KmsError } from './errors.ts';

/** The operators the emulator evaluates, without their ...IfExists suffix (Null has none). */
const BASE_OPERATORS = new Set([
  'StringEquals',
  'StringNotEquals',
  'StringEqualsIgnoreCase',
  'StringNotEqualsIgnoreCase',
  'StringLike',
  'StringNotLike',
  'ArnEquals',
  'ArnNotEquals',
  'ArnLike',
  'ArnNotLike',
  'Bool',
]);

export type PrincipalValue = '*' | Record<string, string | string[]>;

export interface Statement {
  Sid?: string;
  Effect: 'Allow' | 'Deny';
  Principal?: PrincipalValue;
  NotPrincipal?: PrincipalValue;
  Action?: string | string[];
  NotAction?: string | string[];
  /** operator -> condition key -> value(s); values are normalized to strings by parsePolicy. */
  Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyDocument {
  Statement: Statement[];
}

function malformed(msg: string): never {
  throw new KmsError('MalformedPolicyDocumentException', msg);
}

export function list<T>(v: T | T[] | undefined): T[] {
  return v === undefined ? [] : Array.isArray(v) ? v : [v];
}

/** How the linter and the emulator name a statement: its Sid, else its index. */
export function statementName(s: Statement, index: number): string {
  return typeof s.Sid === 'string' && s.Sid !== '' ? s.Sid : `Statement[${index}]`;
}

/** `op` without ...IfExists, and whether it had it; undefined when the emulator does not know it. */
export function parseOperator(op: string): { base: string; ifExists: boolean } | undefined {
  if (op === 'Null') return { base: op, ifExists: false };
  const ifExists = op.endsWith('IfExists');
  const base = ifExists ? op.slice(0, -'IfExists'.length) : op;
  return BASE_OPERATORS.has(base) ? { base, ifExists } : undefined;
}

function checkPrincipal(i: number, field: string, p: unknown): void {
  if (p === undefined || p === '*') return;
  if (!p || typeof p !== 'object' || Array.isArray(p))
    malformed(`Statement[${i}]: ${field} must be "*" or an object`);
  for (const v of Object.values(p)) {
    if (list(v).length === 0 || list(v).some((x) => typeof x !== 'string'))
      malformed(`Statement[${i}]: ${field} values must be strings`);
  }
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
    if (s.Principal !== undefined && s.NotPrincipal !== undefined)
      malformed(`Statement[${i}]: Principal and NotPrincipal cannot both be given`);
    checkPrincipal(i, 'Principal', s.Principal);
    checkPrincipal(i, 'NotPrincipal', s.NotPrincipal);
    if (s.Condition !== undefined && (typeof s.Condition !== 'object' || s.Condition === null))
      malformed(`Statement[${i}]: Condition must be an object`);
    for (const [op, block] of Object.entries(s.Condition ?? {})) {
      if (!parseOperator(op))
        malformed(`Statement[${i}]: condition operator ${op} is not supported by the emulator`);
      if (!block || typeof block !== 'object' || Array.isArray(block))
        malformed(`Statement[${i}]: condition ${op} must be an object`);
      for (const [key, v] of Object.entries(block)) {
        // IAM takes booleans and numbers as values too ("Null": {"k": true}); they compare as text.
        const values = list(v as unknown);
        if (values.length === 0 || values.some((x) => !['string', 'boolean', 'number'].includes(typeof x)))
          malformed(`Statement[${i}]: condition values must be strings`);
        block[key] = values.map(String);
      }
    }
  });
  return { Statement: statements as Statement[] };
}

/**
 * IAM's wildcard match (`*` any run, `?` one character), in O(pattern x text) time: a policy is outside
 * input, and a regular expression built from "kms:**********…x" would backtrack for hours.
 */
export function wildcardMatch(pattern: string, text: string, ignoreCase: boolean): boolean {
  const p = ignoreCase ? pattern.toLowerCase() : pattern;
  const t = ignoreCase ? text.toLowerCase() : text;
  let i = 0; // in t
  let j = 0; // in p
  let star = -1; // the last * seen in p
  let resume = 0; // where in t that * is matched up to
  while (i < t.length) {
    if (j < p.length && (p[j] === '?' || p[j] === t[i])) {
      i++;
      j++;
    } else if (j < p.length && p[j] === '*') {
      star = j++;
      resume = i;
    } else if (star !== -1) {
      j = star + 1; // let the last * take one more character
      i = ++resume;
    } else return false;
  }
  while (j < p.length && p[j] === '*') j++;
  return j === p.length;
}

function actionMatches(patterns: string[], action: string): boolean {
  // Action names are case-insensitive in IAM.
  return patterns.some((p) => wildcardMatch(p, action, true));
}

const PRINCIPAL_ARN_RE = /^arn:([\w-]+):(iam|sts)::(\d{12}):(.+)$/;

/** The account of a principal ARN, or undefined for a service or a malformed value. */
export function principalAccount(principal: string): string | undefined {
  return PRINCIPAL_ARN_RE.exec(principal)?.[3];
}

/** The IAM role an assumed-role session ARN belongs to (`arn:aws:sts::A:assumed-role/R/s` -> role R). */
function sessionRole(principal: string): { partition: string; account: string; name: string } | undefined {
  const m = PRINCIPAL_ARN_RE.exec(principal);
  const r = m && m[2] === 'sts' ? /^assumed-role\/([^/]+)\/.+$/.exec(m[4]!) : null;
  return m && r ? { partition: m[1]!, account: m[3]!, name: r[1]! } : undefined;
}

/** Whether one entry of a Principal element names `principal`, as KMS reads key policies. */
function principalEntryMatches(entry: string, principal: string): boolean {
  if (entry === '*') return true;
  // An account (id or root ARN) delegates to that account's IAM policies: every principal of it may be
  // allowed by one. The emulator has no IAM policies, so it takes the worst case: they all are.
  if (/^\d{12}$/.test(entry)) return principalAccount(principal) === entry;
  const m = PRINCIPAL_ARN_RE.exec(entry);
  if (m && m[2] === 'iam' && m[4] === 'root') return principalAccount(principal) === m[3];
  if (entry === principal) return true;
  // A role names its sessions too (an instance's credentials are a session of its instance role).
  const role = m && m[2] === 'iam' ? /^role\/(?:.*\/)?([^/]+)$/.exec(m[4]!) : null;
  const session = sessionRole(principal);
  return !!(role && session && session.account === m![3] && session.name === role[1]);
}

function principalMatches(value: PrincipalValue, principal: string): boolean {
  if (value === '*') return true;
  return Object.values(value).some((v) => list(v).some((e) => principalEntryMatches(e, principal)));
}

/** The global condition keys IAM adds for the caller (aws:PrincipalArn names a session's role). */
function principalContext(principal: string): Record<string, string> {
  const account = principalAccount(principal);
  if (!account) return {};
  const session = sessionRole(principal);
  return {
    'aws:PrincipalArn': session
      ? `arn:${session.partition}:iam::${session.account}:role/${session.name}`
      : principal,
    'aws:PrincipalAccount': account,
    'kms:CallerAccount': account,
  };
}

function conditionKeyValue(context: Record<string, string>, key: string): string | undefined {
  // Condition key names are case-insensitive in IAM.
  const lower = key.toLowerCase();
  for (const [k, v] of Object.entries(context)) if (k.toLowerCase() === lower) return v;
  return undefined;
}

function operatorHolds(op: string, actual: string | undefined, values: string[]): boolean {
  const parsed = parseOperator(op);
  if (!parsed) return false; // parsePolicy refused it already
  const { base, ifExists } = parsed;
  if (base === 'Null') {
    const absent = actual === undefined;
    return values.some((v) => (v.toLowerCase() === 'true') === absent);
  }
  if (actual === undefined) return ifExists || base.includes('Not'); // IAM: a missing key fails positive operators
  const negated = base.includes('Not');
  let hit: boolean;
  if (base === 'Bool') hit = values.some((v) => v.toLowerCase() === actual.toLowerCase());
  else if (base.startsWith('Arn') || base.startsWith('StringLike') || base.startsWith('StringNotLike'))
    hit = values.some((v) => wildcardMatch(v, actual, false));
  else if (base.endsWith('IgnoreCase')) hit = values.some((v) => v.toLowerCase() === actual.toLowerCase());
  else hit = values.some((v) => v === actual);
  return negated ? !hit : hit;
}

function statementApplies(
  s: Statement,
  action: string,
  context: Record<string, string>,
  principal: string | undefined,
): boolean {
  if (s.Action !== undefined && !actionMatches(list(s.Action), action)) return false;
  if (s.NotAction !== undefined && actionMatches(list(s.NotAction), action)) return false;
  // Without a principal (a caller that only asks about conditions), Principal is not looked at; a statement
  // without Principal applies to everyone here (KMS would refuse such a policy: the linter says so).
  if (principal !== undefined) {
    if (s.Principal !== undefined && !principalMatches(s.Principal, principal)) return false;
    if (s.NotPrincipal !== undefined && principalMatches(s.NotPrincipal, principal)) return false;
  }
  for (const [op, block] of Object.entries(s.Condition ?? {})) {
    for (const [key, values] of Object.entries(block)) {
      if (!operatorHolds(op, conditionKeyValue(context, key), list(values))) return false;
    }
  }
  return true;
}

export interface PolicyDecision {
  allowed: boolean;
  /** Which statement decided (Sid or index), for the emulator's log: the Deny, or the first Allow. */
  by: string | null;
}

export interface PolicyExplanation extends PolicyDecision {
  /** Every Allow statement that matched the request (the linter names them all). */
  allows: string[];
}

/**
 * Is `action` allowed for a request with these condition keys (the attestation document's PCRs, the
 * encryption context...) from `principal` (an IAM ARN; omitted = Principal elements are not checked)?
 */
export function evaluatePolicy(
  doc: PolicyDocument,
  action: string,
  context: Record<string, string>,
  principal?: string,
): PolicyDecision {
  const { allowed, by } = explainPolicy(doc, action, context, principal);
  return { allowed, by };
}

/** evaluatePolicy, plus every Allow statement that matched (empty when a Deny decided). */
export function explainPolicy(
  doc: PolicyDocument,
  action: string,
  context: Record<string, string>,
  principal?: string,
): PolicyExplanation {
  const ctx = principal === undefined ? context : { ...principalContext(principal), ...context };
  const allows: string[] = [];
  for (const [i, s] of doc.Statement.entries()) {
    if (!statementApplies(s, action, ctx, principal)) continue;
    const name = statementName(s, i);
    if (s.Effect === 'Deny') return { allowed: false, by: name, allows: [] };
    allows.push(name);
  }
  return { allowed: allows.length > 0, by: allows[0] ?? null, allows };
}
