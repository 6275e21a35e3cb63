// `cloister kms policy --lint`: can anyone get a plaintext out of this key without the enclave?
//
// Verdicts about access come from the emulator's evaluator (src/kms-emulator/policy.ts), the code that
// enforces key policies in dev mode and tests: the linter asks it about synthetic requests, every
// principal the policy names (plus an outsider) x every action that can yield a plaintext x four
// attestation documents (none, another enclave's, a debug-mode enclave's, the one the policy pins).
// Static checks cover what no request shows: unknown condition keys, malformed PCR values, wildcards.
import {
  explainPolicy,
  list,
  type PolicyDocument,
  parseOperator,
  parsePolicy,
  type Statement,
  statementName,
} from '../kms-emulator/policy.ts';
import {
  ATTESTATION_PREFIX,
  ATTESTING_ACTIONS,
  attestationKeyPcr,
  canonicalKey,
  DEBUG_ZERO_PCRS,
  IMAGE_PCRS,
  type INDIRECT_PLAINTEXT_ACTIONS,
  imageKey,
  isPcrHex,
  NITRO_PCR_COUNT,
  NITROTPM_PCR_COUNT,
  PCR_HEX_LENGTH,
  pcrKey,
  pcrValueProblem,
  tpmPcrKey,
} from './condition-keys.ts';

export type Severity = 'error' | 'warning' | 'note';

export type FindingKind =
  | 'malformed' // KMS (or the emulator) would refuse the policy; nothing else can be said
  | 'no-principal' // a statement without Principal: KMS refuses the policy
  | 'leak' // a principal gets a plaintext without an attestation document
  | 'indirect-leak' // ReEncryptFrom or CreateGrant: a plaintext through another key or a grant
  | 'any-enclave' // another enclave's document (other measurements) is enough
  | 'debug-mode' // a debug-mode enclave's document (PCR0-2 all zeros) is enough, or a pin is zeros
  | 'wildcard' // a Like operator with * or ? in an attestation value
  | 'unknown-key' // a condition key KMS does not know (never in any request)
  | 'key-spelling' // a known key in another case (works: key names are case-insensitive)
  | 'pcr-value' // a PCR value that is not 96 hex characters, or upper case under a case-sensitive operator
  | 'policy-change' // a principal can replace this policy
  | 'no-decrypt' // nobody can get a plaintext even with the pinned measurements
  | 'weak-pin'; // an attested Allow that pins no image measurement (PCR0/1/2/8)

export interface Finding {
  severity: Severity;
  kind: FindingKind;
  /** The statements involved (Sid, else Statement[i]); empty for findings about the whole policy. */
  statements: string[];
  /** The principal a request was made as, as the policy names it (for access findings). */
  principal?: string;
  /** The actions found allowed (for access findings). */
  actions?: string[];
  message: string;
}

export interface LintReport {
  ok: boolean;
  errors: number;
  warnings: number;
  findings: Finding[];
}

const PLAINTEXT_ACTIONS: readonly string[] = ATTESTING_ACTIONS;
const OUTSIDER = 'arn:aws:iam::000000000000:user/cloister-lint-outsider';

/** A request principal standing for a Principal entry, and how the report names it. */
interface Probe {
  principal: string;
  label: string;
  /** "*" and the outsider: anyone; they must never get what a named administrator may. */
  anyone: boolean;
}

/** The request principal that stands for a Principal entry (or an ARN a condition names). */
function probeFor(entry: string): Probe {
  if (entry === '*') return { principal: OUTSIDER, label: 'any AWS principal ("*")', anyone: true };
  const account = /^\d{12}$/.test(entry) ? entry : /^arn:[\w-]+:iam::(\d{12}):root$/.exec(entry)?.[1];
  if (account) {
    return {
      principal: `arn:aws:iam::${account}:user/cloister-lint-any-iam-principal`,
      label: `every IAM principal of account ${account}${entry === account ? '' : ` (${entry})`}`,
      anyone: false,
    };
  }
  // An instance's credentials are a session of its role: ask as one.
  const role = /^arn:([\w-]+):iam::(\d{12}):role\/(?:.*\/)?([^/]+)$/.exec(entry);
  return {
    principal: role ? `arn:${role[1]}:sts::${role[2]}:assumed-role/${role[3]}/cloister-lint` : entry,
    label: entry,
    anyone: false,
  };
}

/**
 * Who to ask as: every principal the policy names, every account it mentions anywhere (a `"*"` principal
 * narrowed by kms:CallerAccount is every principal of that account), every exact principal ARN its
 * conditions name (aws:PrincipalArn), and a principal of another account.
 */
function probesFor(doc: PolicyDocument): Probe[] {
  const entries: string[] = [];
  for (const s of doc.Statement) {
    for (const p of [s.Principal, s.NotPrincipal]) {
      if (p !== undefined) entries.push(...(p === '*' ? ['*'] : Object.values(p).flatMap((v) => list(v))));
    }
    for (const block of Object.values(s.Condition ?? {}))
      for (const values of Object.values(block))
        for (const v of list(values)) {
          if (/^arn:[\w-]+:(iam|sts)::\d{12}:[^*?]+$/.test(v)) entries.push(v);
          entries.push(...(v.match(/\b\d{12}\b/g) ?? []));
        }
  }
  const out = new Map<string, Probe>();
  for (const p of entries.map(probeFor)) if (!out.has(p.principal)) out.set(p.principal, p);
  if (!out.has(OUTSIDER))
    out.set(OUTSIDER, { principal: OUTSIDER, label: 'a principal of another account', anyone: true });
  return [...out.values()];
}

// Synthetic attestation documents, as condition keys. "Another enclave" has other measurements in every
// PCR a real enclave sets (0-4, 8) and zeros where every enclave has zeros (5-7, 9-31); "debug mode" is the
// same with PCR0-2 zeroed. The NitroTPM one has other values in all 24 PCRs.
const OTHER = (n: number) => `${(n + 1).toString(16).padStart(2, '0')}`.repeat(PCR_HEX_LENGTH / 2);
const ZERO = '0'.repeat(PCR_HEX_LENGTH);

function nitroDoc(pcr: (n: number) => string): Record<string, string> {
  const ctx: Record<string, string> = {};
  for (let n = 0; n < NITRO_PCR_COUNT; n++) ctx[pcrKey(n)] = pcr(n);
  ctx[imageKey] = ctx[pcrKey(0)]!;
  return ctx;
}

function tpmDoc(pcr: (n: number) => string): Record<string, string> {
  const ctx: Record<string, string> = {};
  for (let n = 0; n < NITROTPM_PCR_COUNT; n++) ctx[tpmPcrKey(n)] = pcr(n);
  return ctx;
}

const realPcr = (n: number) => ([0, 1, 2, 3, 4, 8].includes(n) ? OTHER(n) : ZERO);
const OTHER_ENCLAVE = nitroDoc(realPcr);
const DEBUG_ENCLAVE = nitroDoc((n) => (DEBUG_ZERO_PCRS.includes(n) ? ZERO : realPcr(n)));
const OTHER_TPM = tpmDoc(OTHER);

interface Condition {
  statement: string;
  effect: 'Allow' | 'Deny';
  op: string;
  key: string;
  values: string[];
}

function conditionsOf(doc: PolicyDocument): Condition[] {
  const out: Condition[] = [];
  doc.Statement.forEach((s: Statement, i) => {
    for (const [op, block] of Object.entries(s.Condition ?? {}))
      for (const [key, values] of Object.entries(block))
        out.push({ statement: statementName(s, i), effect: s.Effect, op, key, values: list(values) });
  });
  return out;
}

/** The documents the policy's own positive pins describe ("the right PCRs"), one per kind of document. */
function pinnedDocs(conditions: Condition[]): Record<string, string>[] {
  const nitro: Record<string, string> = { ...OTHER_ENCLAVE };
  const tpm: Record<string, string> = { ...OTHER_TPM };
  let hasNitro = false;
  let hasTpm = false;
  for (const c of conditions) {
    const base = parseOperator(c.op)?.base ?? '';
    const pcr = attestationKeyPcr(c.key);
    // An Allow on "= v" and a Deny on "!= v" both say the enclave's document carries v.
    const positive = c.effect === 'Allow' ? /^String(Equals|Like)/ : /^StringNot(Equals|Like)/;
    if (!pcr || !positive.test(base)) continue;
    // A real document carries 96 lower-case hex characters; a value no document can carry pins nothing.
    const value = c.values.find(isPcrHex)?.toLowerCase();
    if (value === undefined) continue;
    if (pcr.kind === 'tpm') {
      tpm[tpmPcrKey(pcr.pcr)] = value;
      hasTpm = true;
    } else {
      // ImageSha384 and PCR0 are one measurement: a document carries the same value in both.
      nitro[pcrKey(pcr.pcr)] = value;
      if (pcr.pcr === 0) nitro[imageKey] = value;
      hasNitro = true;
    }
  }
  return [...(hasNitro ? [nitro] : []), ...(hasTpm ? [tpm] : [])];
}

function staticFindings(doc: PolicyDocument, conditions: Condition[]): Finding[] {
  const out: Finding[] = [];
  doc.Statement.forEach((s, i) => {
    if (s.Principal === undefined && s.NotPrincipal === undefined) {
      out.push({
        severity: 'error',
        kind: 'no-principal',
        statements: [statementName(s, i)],
        message:
          'has no Principal: KMS refuses a key policy statement without one (MalformedPolicyDocumentException); the emulator applies it to everyone',
      });
    }
  });
  for (const c of conditions) {
    const at = [c.statement];
    const canonical = canonicalKey(c.key);
    const isAttestation = c.key.toLowerCase().startsWith(ATTESTATION_PREFIX.toLowerCase());
    if (!canonical) {
      out.push({
        severity: 'error',
        kind: 'unknown-key',
        statements: at,
        message: `condition key ${c.key} is not one KMS knows${isAttestation ? ` (it knows ImageSha384, PCR0-PCR${NITRO_PCR_COUNT - 1} and NitroTPMPCR0-NitroTPMPCR${NITROTPM_PCR_COUNT - 1})` : ''}: no request carries it, so ${c.op} on it ${c.effect === 'Allow' ? 'never holds (nobody is allowed) or, negated, always holds' : 'always or never holds'}`,
      });
      continue;
    }
    if (canonical !== c.key) {
      out.push({
        severity: 'warning',
        kind: 'key-spelling',
        statements: at,
        message: `condition key ${c.key} is documented as ${canonical} (key names are case-insensitive, so KMS reads it; spell it as documented)`,
      });
    }
    const pcr = attestationKeyPcr(canonical);
    const base = parseOperator(c.op)?.base;
    if (!pcr || !base || base === 'Null') continue;
    const name = canonical.slice(ATTESTATION_PREFIX.length);
    for (const v of c.values) {
      if (/[*?]/.test(v) && /Like/.test(base)) {
        out.push({
          severity: 'error',
          kind: 'wildcard',
          statements: at,
          message: `${c.op} ${name} = '${v}' is a wildcard: enclaves with other measurements match it`,
        });
        continue;
      }
      const wrong = pcrValueProblem(v, pcr);
      if (wrong) {
        const shown = v.length > 20 ? `${v.slice(0, 20)}…` : v;
        out.push({
          severity: 'error',
          kind: wrong.problem === 'debug' ? 'debug-mode' : 'pcr-value',
          statements: at,
          message:
            wrong.problem === 'debug'
              ? `${name} ${wrong.text} (its memory is readable from the parent)`
              : `${name} = '${shown}' ${wrong.text}: no document matches it`,
        });
        continue;
      }
      if (/[A-F]/.test(v) && !base.endsWith('IgnoreCase')) {
        out.push({
          severity: 'error',
          kind: 'pcr-value',
          statements: at,
          message: `${name} is upper-case hex under the case-sensitive ${c.op}: documents carry lower case, so it never matches (use StringEqualsIgnoreCase)`,
        });
      }
    }
  }
  return out;
}

/** What a principal could do, as a finding (its actions are added as the probes find them). */
interface Verdict {
  kind: FindingKind;
  severity: Severity;
  what: string;
}

/** The documents a plaintext request is tried with, in order: the first one allowed is the finding. */
const ESCALATION: Array<Verdict & { docs: Record<string, string>[] }> = [
  {
    kind: 'leak',
    severity: 'error',
    docs: [{}],
    what: 'can get a plaintext without an attestation document',
  },
  {
    kind: 'any-enclave',
    severity: 'error',
    docs: [OTHER_ENCLAVE, OTHER_TPM],
    what: "can get a plaintext with another enclave's attestation document (other measurements)",
  },
  {
    kind: 'debug-mode',
    severity: 'error',
    docs: [DEBUG_ENCLAVE],
    what: "can get a plaintext with a debug-mode enclave's document (PCR0-2 all zeros)",
  },
];
const WEAK_PIN: Verdict = {
  kind: 'weak-pin',
  severity: 'warning',
  what: 'gets a plaintext with attestation, but the condition pins no image measurement (PCR0, 1, 2 or 8): any image started where the pinned PCRs hold may decrypt',
};
const INDIRECT: Record<(typeof INDIRECT_PLAINTEXT_ACTIONS)[number], Verdict> = {
  'kms:ReEncryptFrom': {
    kind: 'indirect-leak',
    severity: 'error',
    what: 'can re-encrypt under a key it holds (ReEncrypt takes no attestation document), then decrypt that',
  },
  'kms:CreateGrant': {
    kind: 'indirect-leak',
    severity: 'error',
    what: 'can create a grant, and a grant gives its grantee Decrypt with no attestation condition',
  },
};
const POLICY_CHANGE = (anyone: boolean): Verdict => ({
  kind: 'policy-change',
  severity: anyone ? 'error' : 'note',
  what: anyone
    ? 'can replace this key policy, and with it every condition'
    : 'can replace this key policy (the key administrator: keep that principal as guarded as the key)',
});

/** The same document with another image (PCR0, 1, 2, 8 of another enclave), for the weak-pin probe. */
function withOtherImage(ctx: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = { ...ctx, [imageKey]: OTHER_ENCLAVE[imageKey]! };
  for (const n of IMAGE_PCRS) out[pcrKey(n)] = OTHER_ENCLAVE[pcrKey(n)]!;
  return out;
}

/** Access findings from the evaluator, grouped by principal, verdict and statements; actions listed together. */
function accessFindings(doc: PolicyDocument, conditions: Condition[]): Finding[] {
  const groups = new Map<string, Finding>();
  const record = (probe: Probe, action: string, statements: string[], v: Verdict) => {
    const id = `${v.what}\0${probe.principal}\0${statements.join('\0')}`;
    const f = groups.get(id);
    if (f) f.actions!.push(action);
    else
      groups.set(id, {
        severity: v.severity,
        kind: v.kind,
        statements,
        principal: probe.label,
        actions: [action],
        message: v.what,
      });
  };
  const pinned = pinnedDocs(conditions);
  let anyoneDecrypts = false;
  for (const probe of probesFor(doc)) {
    const ask = (action: string, ctx: Record<string, string>) =>
      explainPolicy(doc, action, ctx, probe.principal);
    for (const action of PLAINTEXT_ACTIONS) {
      const found = ESCALATION.find((v) => {
        const d = v.docs.map((ctx) => ask(action, ctx)).find((x) => x.allowed);
        if (d) record(probe, action, d.allows, v);
        return d !== undefined;
      });
      if (found) continue;
      for (const ctx of pinned) {
        if (!ask(action, ctx).allowed) continue;
        anyoneDecrypts = true;
        const weak = ctx[imageKey] === undefined ? undefined : ask(action, withOtherImage(ctx));
        if (weak?.allowed) record(probe, action, weak.allows, WEAK_PIN);
      }
    }
    for (const [action, verdict] of Object.entries(INDIRECT)) {
      const d = ask(action, {});
      if (d.allowed) record(probe, action, d.allows, verdict);
    }
    const put = ask('kms:PutKeyPolicy', {});
    if (put.allowed) record(probe, 'kms:PutKeyPolicy', put.allows, POLICY_CHANGE(probe.anyone));
  }
  const out = [...groups.values()];
  for (const f of out) {
    f.message = `${f.principal} ${f.message}: ${f.actions!.join(', ')}`;
  }
  if (!anyoneDecrypts && !out.some((f) => f.kind === 'leak')) {
    out.push({
      severity: 'warning',
      kind: 'no-decrypt',
      statements: [],
      message:
        pinned.length === 0
          ? 'no statement allows a plaintext-yielding action under an attestation condition: the enclave cannot decrypt with this key'
          : 'no principal gets a plaintext even with the measurements this policy pins (a Deny, a typo or a missing Allow): the enclave cannot decrypt with this key',
    });
  }
  return out;
}

/** Reads a key policy text (or `aws kms get-key-policy` output, whose Policy is the text). */
export function policyText(text: string): string {
  try {
    const j = JSON.parse(text) as { Policy?: unknown; Statement?: unknown };
    if (j && typeof j === 'object' && j.Statement === undefined && typeof j.Policy === 'string')
      return j.Policy;
  } catch {
    // parsePolicy says what is wrong with it
  }
  return text;
}

export function lintPolicy(text: string): LintReport {
  let doc: PolicyDocument;
  const findings: Finding[] = [];
  try {
    doc = parsePolicy(policyText(text));
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    const at = /^Statement\[\d+\]/.exec(message)?.[0];
    findings.push({ severity: 'error', kind: 'malformed', statements: at ? [at] : [], message });
    return summarize(findings);
  }
  const conditions = conditionsOf(doc);
  findings.push(...staticFindings(doc, conditions), ...accessFindings(doc, conditions));
  return summarize(findings);
}

const ORDER: Record<Severity, number> = { error: 0, warning: 1, note: 2 };

function summarize(findings: Finding[]): LintReport {
  findings.sort((a, b) => ORDER[a.severity] - ORDER[b.severity]);
  const errors = findings.filter((f) => f.severity === 'error').length;
  const warnings = findings.filter((f) => f.severity === 'warning').length;
  return { ok: errors === 0, errors, warnings, findings };
}

/** The human-readable report: one line per finding, the statement first. */
export function formatReport(file: string, report: LintReport): string {
  const lines = report.findings.map((f) => {
    const where = f.statements.length > 0 ? f.statements.map((s) => `"${s}"`).join(', ') : '(policy)';
    return `${f.severity.padEnd(7)} ${f.kind.padEnd(13)} ${where}: ${f.message}`;
  });
  const verdict = report.ok
    ? `${file}: no leak found${report.warnings ? ` (${report.warnings} warning${report.warnings > 1 ? 's' : ''})` : ''}`
    : `${file}: ${report.errors} error${report.errors > 1 ? 's' : ''}, ${report.warnings} warning${report.warnings === 1 ? '' : 's'}`;
  return `${[...lines, verdict].join('\n')}\n`;
}
