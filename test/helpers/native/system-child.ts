// Child process for test/native.test.ts: runs one system call under test and prints JSON.
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type AddressInfo, connect, createServer } from 'node:net';
import { bringUpLoopback, reapZombie, seedEntropy, setChildSubreaper } from '../../../src/system/index.ts';

const out = (o: unknown) => console.log(JSON.stringify(o));
const loLine = () => execFileSync('ip', ['-o', 'link', 'show', 'lo'], { encoding: 'utf8' });

function orphan(code: number): number {
  // The subshell outlives its parent sh, so it is orphaned and re-parented.
  const r = spawnSync('sh', ['-c', `(sleep 0.3; exit ${code}) >/dev/null 2>&1 & echo $!`], {
    encoding: 'utf8',
  });
  return Number(r.stdout.trim());
}

function ppid(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

async function waitReaped(pid: number): Promise<number | null> {
  for (let i = 0; i < 250; i++) {
    const s = reapZombie(pid);
    if (s !== null) return s;
    await new Promise((r) => setTimeout(r, 20));
  }
  return null;
}

const what = process.argv[2];
/** Listens on 127.0.0.1 and sends a byte through: the error code, or 'ok'. */
async function tcpRoundTrip(): Promise<string> {
  const server = createServer((s) => s.end('x'));
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', resolve);
    });
  } catch (e) {
    return (e as { code?: string }).code ?? String(e);
  }
  const { port } = server.address() as AddressInfo;
  const got = await new Promise<string>((resolve) => {
    const c = connect(port, '127.0.0.1');
    let data = '';
    c.on('data', (d) => {
      data += d;
    });
    c.on('end', () => resolve(data === 'x' ? 'ok' : `got ${data}`));
    c.on('error', (e: Error & { code?: string }) => resolve(e.code ?? e.message));
  });
  server.close();
  return got;
}

if (what === 'loopback') {
  const before = { link: loLine(), tcp: await tcpRoundTrip() };
  bringUpLoopback();
  const after = { link: loLine(), tcp: await tcpRoundTrip() };
  bringUpLoopback(); // idempotent
  out({ before, after });
} else if (what === 'entropy') {
  out(seedEntropy(randomBytes(64)));
} else if (what === 'reaper') {
  const errCode = (f: () => unknown) => {
    try {
      f();
      return 'no error';
    } catch (e) {
      return (e as { code?: string }).code;
    }
  };
  // Without the subreaper flag the orphan goes to init: not ours to reap.
  const a = orphan(3);
  await new Promise((r) => setTimeout(r, 50));
  const withoutSubreaper = { ppidIsUs: ppid(a) === process.pid, reap: errCode(() => reapZombie(a)) };
  setChildSubreaper();
  const b = orphan(7);
  await new Promise((r) => setTimeout(r, 50));
  const ppidIsUs = ppid(b) === process.pid;
  const status = await waitReaped(b);
  out({
    withoutSubreaper,
    ppidIsUs,
    status,
    afterReap: errCode(() => reapZombie(b)),
    zero: errCode(() => reapZombie(0)),
  });
}
