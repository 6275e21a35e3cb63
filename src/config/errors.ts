// One error type for everything wrong in enclaver.yaml or cloister.yaml. It always names the file, the
// key path (`ingress[1].listen_port`) and the line/column of the offending YAML node, so an operator can
// fix the file without guessing. When a file has several problems, all of them are reported at once:
// `errors` lists each one and `message` holds one line per problem (the first line is this error's own).

import { CloisterError } from '../errors.ts';

export class ConfigError extends CloisterError {
  override name = 'ConfigError';
  /** Every problem found in the same load, this one first (length >= 1). */
  errors: ConfigError[] = [this];

  constructor(
    readonly file: string,
    /** Dotted key path, e.g. `egress.allow[2]`; empty for problems of the whole document. */
    readonly keyPath: string,
    /** 1-based; 0 when the file could not be read at all. */
    readonly line: number,
    /** 1-based. */
    readonly column: number,
    /** What is wrong, without the location prefix. */
    readonly what: string,
  ) {
    super('CLO_ERR_CONFIG', formatLocation(file, keyPath, line, column, what));
  }

  /** Folds several problems into the first one, so one throw reports them all. */
  static combine(errors: ConfigError[]): ConfigError {
    // Files keep the order they were read in; within a file, problems go in document order.
    const files = [...new Set(errors.map((e) => e.file))];
    const sorted = files.flatMap((f) =>
      errors.filter((e) => e.file === f).sort((a, b) => a.line - b.line || a.column - b.column),
    );
    const first = sorted[0]!;
    first.errors = sorted;
    first.message = sorted.map((e) => formatLocation(e.file, e.keyPath, e.line, e.column, e.what)).join('\n');
    return first;
  }
}

function formatLocation(file: string, keyPath: string, line: number, column: number, what: string): string {
  // line 0: the problem is the file itself (unreadable), not a place in it.
  const where = line > 0 ? `${file}:${line}:${column}` : file;
  return keyPath === '' ? `${where}: ${what}` : `${where}: ${keyPath}: ${what}`;
}
