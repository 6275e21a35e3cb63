// Keeps Node's undocumented internals in one module: src/transport/node-internals.ts, where a start-up
// self-check proves each still behaves as assumed (issue 10). Run by `npm run lint`; fails naming each
// file and line elsewhere in src/ that touches one. Comments are not code and are skipped.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const HOME = 'src/transport/node-internals.ts';

/** What counts as reaching into Node's internals, with the reason a reader is shown. */
export const INTERNALS = [
  [/process\.binding\s*\(/, 'process.binding()'],
  [/\bpipe_wrap\b|\btcp_wrap\b|\bstream_wrap\b/, "an internal binding ('pipe_wrap'...)"],
  [/\._listen2\b/, 'Server._listen2'],
  [/\._handle\b/, 'the libuv handle (._handle)'],
  [/\breadStop\b|\breadStart\b/, 'handle.readStop/readStart'],
  [/\._readableState\b|\._writableState\b/, 'stream state (._readableState/._writableState)'],
  [/\._httpMessage\b/, 'socket._httpMessage'],
  [/\._read\s*=/, "replacing a stream's _read"],
  [/SocketConstructorOpts/, 'new Socket({ handle }) (the cast to SocketConstructorOpts)'],
  [/ChildProcess\.prototype|\.prototype\.spawn\b/, 'patching ChildProcess.prototype'],
];

function files(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...files(p));
    else if (/\.(ts|mts|js|mjs)$/.test(name)) out.push(p);
  }
  return out;
}

/** The code of a line: without a // comment, and nothing for a line inside or starting a block comment. */
function codeLines(text) {
  let inBlock = false;
  return text.split('\n').map((line) => {
    let code = line;
    if (inBlock) {
      const end = code.indexOf('*/');
      if (end === -1) return '';
      code = code.slice(end + 2);
      inBlock = false;
    }
    code = code.replace(/\/\*.*?\*\//g, '');
    const start = code.indexOf('/*');
    if (start !== -1) {
      inBlock = true;
      code = code.slice(0, start);
    }
    // A // inside a string ('http://...') is rare in these patterns' lines; cut at the first one.
    const slash = code.search(/(^|[^:'"`])\/\//);
    return slash === -1 ? code : code.slice(0, slash + 1);
  });
}

export function findInternals(dir = join(root, 'src')) {
  const found = [];
  for (const file of files(dir)) {
    const rel = relative(root, file);
    if (rel === HOME) continue;
    codeLines(readFileSync(file, 'utf8')).forEach((code, i) => {
      for (const [re, what] of INTERNALS) if (re.test(code)) found.push(`${rel}:${i + 1}: ${what}`);
    });
  }
  return found;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const found = findInternals(process.argv[2] ?? join(root, 'src'));
  if (found.length) {
    console.error(`Node internals outside ${HOME} (move them there, with a self-check):`);
    for (const f of found) console.error(`  ${f}`);
    process.exit(1);
  }
  console.log(`check-node-internals: only ${HOME} uses Node internals`);
}
