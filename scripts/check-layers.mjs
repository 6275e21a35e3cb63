// Fails when src/ has an import cycle between folders (docs/ARCHITECTURE.md, "Layers"). A folder of src/
// is one node; a file directly in src/ (errors.ts, constants.ts, cli.ts...) is a node of its own. Every
// relative import counts, `import type` and dynamic `import()` included: a type-only cycle is still two
// folders that cannot be understood one without the other.
//
// Usage: node scripts/check-layers.mjs [src-dir]   (exit 1 and the cycle printed when there is one)
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative, sep } from 'node:path';

const root = process.argv[2] ?? 'src';

function files(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (name.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** The node a file belongs to: its top folder under src/, or the file itself at the top. */
function nodeOf(file) {
  const rel = relative(root, file);
  const parts = rel.split(sep);
  return parts.length === 1 ? parts[0] : `${parts[0]}/`;
}

// `from '../x.ts'`, `import '../x.ts'`, `import('../x.ts')`; only relative specifiers are ours.
const IMPORT_RE = /(?:\bfrom\s*|\bimport\s*\(?\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

const edges = new Map(); // node -> Map(node -> example "file -> import")
for (const file of files(root)) {
  const from = nodeOf(file);
  const text = readFileSync(file, 'utf8');
  for (const m of text.matchAll(IMPORT_RE)) {
    const target = normalize(join(dirname(file), m[1]));
    if (relative(root, target).startsWith('..')) continue;
    const to = nodeOf(target);
    if (to === from) continue;
    if (!edges.has(from)) edges.set(from, new Map());
    if (!edges.get(from).has(to)) edges.get(from).set(to, `${relative(root, file)} imports ${m[1]}`);
  }
}

// Depth-first search for a back edge; report the first cycle found with one import per step.
const state = new Map(); // node -> 'active' | 'done'
const stack = [];
function visit(node) {
  state.set(node, 'active');
  stack.push(node);
  for (const next of edges.get(node)?.keys() ?? []) {
    if (state.get(next) === 'active') return [...stack.slice(stack.indexOf(next)), next];
    if (!state.has(next)) {
      const cycle = visit(next);
      if (cycle) return cycle;
    }
  }
  stack.pop();
  state.set(node, 'done');
  return null;
}

for (const node of [...edges.keys()].sort()) {
  if (state.has(node)) continue;
  const cycle = visit(node);
  if (cycle) {
    console.error(`import cycle between folders of ${root}/ (see docs/ARCHITECTURE.md, "Layers"):`);
    for (let i = 0; i + 1 < cycle.length; i++)
      console.error(`  ${cycle[i]} -> ${cycle[i + 1]}: ${edges.get(cycle[i]).get(cycle[i + 1])}`);
    process.exit(1);
  }
}
console.log(
  `check-layers: no import cycle between the ${new Set([...edges.keys(), ...[...edges.values()].flatMap((m) => [...m.keys()])]).size} folders and top-level files of ${root}/`,
);
