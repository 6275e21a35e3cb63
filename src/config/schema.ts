// A small schema language over the YAML syntax tree (not over plain JS values), so that every problem
// can name the exact node: file, key path and line/column. Each validator returns the plain value or
// INVALID after recording a ConfigError on the source; validation goes on, so one load reports every
// problem in the file. Semantics follow Enclaver's serde_yaml parsing where they matter (see
// docs/configuration.md): unknown keys are errors, an optional key set to null counts as absent, and
// a string field takes any scalar's text as written (serde_yaml 0.9 does the same: `version: 1`).
import { isAlias, isMap, isScalar, isSeq, LineCounter, type Node, parseDocument } from 'yaml';
import { ConfigError } from './errors.ts';

export type Path = readonly (string | number)[];

/** `['ingress', 1, 'listen_port']` -> `ingress[1].listen_port`. */
export function formatPath(path: Path): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out === '' ? part : `.${part}`;
  }
  return out;
}

/** One YAML file: its syntax tree, a line index, and the problems found so far. */
export class YamlSource {
  readonly errors: ConfigError[] = [];
  /** The value node at each visited key path, so cross-field checks can point at a line. */
  readonly nodes = new Map<string, Node>();
  /** The key node of each visited mapping entry (`kms_proxy:` itself rather than its value). */
  readonly keyNodes = new Map<string, Node>();
  readonly root: Node | null;
  private readonly lines: LineCounter;

  constructor(
    readonly file: string,
    text: string,
  ) {
    this.lines = new LineCounter();
    const doc = parseDocument(text, { lineCounter: this.lines, prettyErrors: false, uniqueKeys: true });
    this.doc = doc;
    // Warnings (unknown tags and the like) are errors too: a config must mean one thing.
    for (const e of [...doc.errors, ...doc.warnings]) {
      this.report(e.pos[0], '', `YAML syntax error: ${e.message.split('\n')[0]}`);
    }
    this.root = doc.errors.length === 0 ? ((doc.contents as Node | null) ?? null) : null;
  }

  private readonly doc: ReturnType<typeof parseDocument>;

  /** Records a problem at a node (or a byte offset) and returns INVALID for convenience. */
  report(at: Node | number | null | undefined, path: Path | string, what: string): typeof INVALID {
    const offset = typeof at === 'number' ? at : (at?.range?.[0] ?? 0);
    const { line, col } = this.lines.linePos(offset);
    const keyPath = typeof path === 'string' ? path : formatPath(path);
    this.errors.push(new ConfigError(this.file, keyPath, line, col, what));
    return INVALID;
  }

  /** 1-based line of a node, for messages that name a second place ("already used at line 7"). */
  lineOf(node: Node | undefined): number {
    return this.lines.linePos(node?.range?.[0] ?? 0).line;
  }

  /** Follows `*alias` to its anchored node. */
  deref(node: Node | null | undefined): Node | null {
    if (node && isAlias(node)) return (node.resolve(this.doc) as Node | undefined) ?? null;
    return node ?? null;
  }
}

export const INVALID: unique symbol = Symbol('invalid');
export type Parsed<T> = T | typeof INVALID;

export interface Schema<T = unknown> {
  /** What a valid value looks like, used in messages: "must be <expected>". */
  readonly expected: string;
  /** Whether an explicit null is a value (true) or means "absent" (false). */
  readonly nullable?: boolean;
  parse(node: Node | null, path: Path, src: YamlSource): Parsed<T>;
}

export function isNull(node: Node | null): boolean {
  return node === null || (isScalar(node) && node.value === null);
}

/** How a node reads in a message: `got a list`, `got the string "x"`. */
export function describe(node: Node | null): string {
  if (isNull(node)) return 'null';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a list';
  if (isScalar(node)) {
    const v = node.value;
    if (typeof v === 'string') return `the string ${JSON.stringify(v)}`;
    if (typeof v === 'number') return `the number ${node.source ?? v}`;
    if (typeof v === 'boolean') return `the boolean ${v}`;
  }
  return 'an unsupported value';
}

function wrong(src: YamlSource, node: Node | null, path: Path, expected: string): typeof INVALID {
  return src.report(node, path, `must be ${expected}, got ${describe(node)}`);
}

/** A string. Numbers and booleans are taken as written (`1.0` stays "1.0"), as serde_yaml does. */
export function str(): Schema<string> {
  const expected = 'a string';
  return {
    expected,
    parse(node, path, src) {
      if (!isScalar(node) || node.value === null) return wrong(src, node, path, expected);
      const v = node.value;
      if (typeof v === 'string') return v;
      if (typeof v === 'number' || typeof v === 'boolean') return node.source ?? String(v);
      return wrong(src, node, path, expected);
    },
  };
}

/** A string that must be written as one: rejects `123` or `true`, which are easy to misread. */
export function strictStr(): Schema<string> {
  const expected = 'a string';
  return {
    expected,
    parse(node, path, src) {
      if (isScalar(node) && typeof node.value === 'string') return node.value;
      if (isScalar(node) && (typeof node.value === 'number' || typeof node.value === 'boolean')) {
        return src.report(node, path, `must be a string, got ${describe(node)} (quote it: "${node.source}")`);
      }
      return wrong(src, node, path, expected);
    },
  };
}

// A YAML 1.2 core-schema integer as written: rejects 8080.0 and 1e3, which parse to integral numbers.
const INT_SOURCE = /^[-+]?(?:[0-9]+|0x[0-9a-fA-F]+|0o[0-7]+)$/;

export function int(opts: { min?: number; max?: number; expected?: string } = {}): Schema<number> {
  const { min = 0, max = Number.MAX_SAFE_INTEGER } = opts;
  const expected =
    opts.expected ??
    (max === Number.MAX_SAFE_INTEGER ? `an integer >= ${min}` : `an integer in ${min}..${max}`);
  return {
    expected,
    parse(node, path, src) {
      if (
        !isScalar(node) ||
        typeof node.value !== 'number' ||
        !INT_SOURCE.test(node.source ?? String(node.value))
      ) {
        return wrong(src, node, path, expected);
      }
      const v = node.value;
      if (!Number.isSafeInteger(v) || v < min || v > max)
        return src.report(node, path, `${v} is out of range: must be ${expected}`);
      return v;
    },
  };
}

export function port(): Schema<number> {
  return int({ min: 1, max: 65535, expected: 'a port number (an integer in 1..65535)' });
}

export function bool(): Schema<boolean> {
  const expected = 'true or false';
  return {
    expected,
    parse(node, path, src) {
      if (isScalar(node) && typeof node.value === 'boolean') return node.value;
      return wrong(src, node, path, expected);
    },
  };
}

export function oneOf<const T extends string>(values: readonly T[]): Schema<T> {
  const expected = `one of ${values.join(', ')}`;
  return {
    expected,
    parse(node, path, src) {
      if (
        isScalar(node) &&
        typeof node.value === 'string' &&
        (values as readonly string[]).includes(node.value)
      ) {
        return node.value as T;
      }
      return wrong(src, node, path, expected);
    },
  };
}

/** Explicit null is a value (e.g. `max_restarts: null` = never give up). */
export function nullable<T>(inner: Schema<T>): Schema<T | null> {
  return {
    expected: `${inner.expected} or null`,
    nullable: true,
    parse(node, path, src) {
      return isNull(node) ? null : inner.parse(node, path, src);
    },
  };
}

/** Adds a check on a valid value; `check` returns what is wrong, or undefined. */
export function refine<T>(inner: Schema<T>, check: (value: T) => string | undefined): Schema<T> {
  return {
    ...inner,
    parse(node, path, src) {
      const v = inner.parse(node, path, src);
      if (v === INVALID) return v;
      const problem = check(v);
      return problem === undefined ? v : src.report(node, path, problem);
    },
  };
}

/**
 * A list. An invalid item is left as a hole (undefined) at its index, so later checks still line up
 * with the file (`ingress[2]` stays index 2); the problem itself is already recorded.
 */
export function list<T>(
  item: Schema<T>,
  expected = `a list (each item ${item.expected})`,
): Schema<(T | undefined)[]> {
  return {
    expected,
    parse(raw, path, src) {
      const node = src.deref(raw);
      if (!isSeq(node)) return wrong(src, node, path, expected);
      return node.items.map((itemNode, i) => {
        const n = src.deref(itemNode as Node | null);
        const p = [...path, i];
        if (n) src.nodes.set(formatPath(p), n);
        const v = item.parse(n, p, src);
        return v === INVALID ? undefined : v;
      });
    },
  };
}

/** A mapping with free-form keys (e.g. region -> endpoint); invalid entries are left out. */
export function dict<T>(
  value: Schema<T>,
  keyCheck?: (key: string) => string | undefined,
  expected = `a mapping (each value ${value.expected})`,
): Schema<Record<string, T>> {
  return {
    expected,
    parse(raw, path, src) {
      const node = src.deref(raw);
      if (!isMap(node)) return wrong(src, node, path, expected);
      const out: Record<string, T> = {};
      for (const pair of node.items) {
        const keyNode = pair.key as Node | null;
        if (!isScalar(keyNode) || keyNode.value === null || typeof keyNode.value === 'object') {
          src.report(keyNode, path, `keys must be plain names, got ${describe(keyNode)}`);
          continue;
        }
        const key = String(keyNode.source ?? keyNode.value);
        const p = [...path, key];
        const problem = keyCheck?.(key);
        if (problem !== undefined) {
          src.report(keyNode, p, problem);
          continue;
        }
        const n = src.deref(pair.value as Node | null);
        if (n) src.nodes.set(formatPath(p), n);
        src.keyNodes.set(formatPath(p), keyNode);
        const v = value.parse(n, p, src);
        if (v !== INVALID) out[key] = v;
      }
      return out;
    },
  };
}

export interface Field {
  schema: Schema;
  required: boolean;
}
export const req = (schema: Schema): Field => ({ schema, required: true });
export const opt = (schema: Schema): Field => ({ schema, required: false });

/**
 * A mapping with a fixed set of keys (serde's deny_unknown_fields). An optional key whose value is
 * null is treated as absent unless its schema is nullable, matching serde's Option<T>. Invalid or
 * missing keys are left out of the result (their problems are recorded), so cross-field checks can
 * still run on the valid rest.
 */
export function obj(fields: Record<string, Field>): Schema<Record<string, unknown>> {
  const names = Object.keys(fields);
  const expected = `a mapping with keys ${names.join(', ')}`;
  return {
    expected,
    parse(raw, path, src) {
      const node = src.deref(raw);
      if (!isMap(node)) return wrong(src, node, path, expected);
      const out: Record<string, unknown> = {};
      const seen = new Set<string>();
      for (const pair of node.items) {
        const keyNode = pair.key as Node | null;
        const key =
          isScalar(keyNode) && keyNode.value !== null ? String(keyNode.source ?? keyNode.value) : null;
        const field = key === null ? undefined : Object.hasOwn(fields, key) ? fields[key] : undefined;
        if (key === null || field === undefined) {
          const shown = key === null ? describe(keyNode) : JSON.stringify(key);
          src.report(
            keyNode,
            key === null ? path : [...path, key],
            `unknown key ${shown}; allowed keys: ${names.join(', ')}`,
          );
          continue;
        }
        seen.add(key);
        const p = [...path, key];
        const n = src.deref(pair.value as Node | null);
        src.nodes.set(formatPath(p), n ?? keyNode!);
        src.keyNodes.set(formatPath(p), keyNode!);
        if (isNull(n) && !field.schema.nullable) {
          if (field.required) {
            src.report(n ?? keyNode, p, `must be ${field.schema.expected}, got null`);
          }
          continue;
        }
        const v = field.schema.parse(n, p, src);
        if (v !== INVALID) out[key] = v;
      }
      for (const name of names) {
        if (fields[name]!.required && !seen.has(name)) {
          src.report(node, [...path, name], `missing required key "${name}"`);
        }
      }
      return out;
    },
  };
}
