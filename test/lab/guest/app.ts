// The app cloister runs as PID 1's child in the "pid1" phase: plain HTTP on 127.0.0.1:8080 and :8443
// (ingress terminates TLS for 8443), a few routes the scenarios drive, and a SIGTERM handler that
// records when it was asked to stop and exits 42 after a short, graceful pause.
import './first-instruction.ts'; // first: the bench-pid1-start timestamp
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { keystream } from './bytes.ts';

const RESULTS = '/tmp/lab';

async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://app');
  if (req.method === 'POST' && url.pathname === '/sha256') {
    const h = createHash('sha256');
    let bytes = 0;
    for await (const c of req) {
      h.update(c as Buffer);
      bytes += (c as Buffer).length;
    }
    res.end(JSON.stringify({ sha256: h.digest('hex'), bytes }));
  } else if (url.pathname === '/stream') {
    res.writeHead(200, { 'content-type': 'application/octet-stream' });
    for (const b of keystream(url.searchParams.get('seed') ?? '', Number(url.searchParams.get('bytes')))) {
      if (!res.write(b)) await new Promise((r) => res.once('drain', r));
    }
    res.end();
  } else if (url.pathname === '/orphans') {
    // The shell starts n sleepers and exits at once: they are orphans, reparented to PID 1 (cloister).
    const n = Number(url.searchParams.get('n'));
    const out = execFileSync(
      '/bin/sh',
      ['-c', `for i in $(seq ${n}); do sleep 4 >/dev/null 2>&1 & echo $!; done`],
      {
        encoding: 'utf8',
      },
    );
    res.end(JSON.stringify({ pids: out.split('\n').filter(Boolean).map(Number) }));
  } else if (url.pathname === '/whoami') {
    res.end(JSON.stringify({ pid: process.pid, ppid: process.ppid, port: req.socket.localPort }));
  } else {
    res.writeHead(404).end();
  }
}

const servers = [8080, 8443].map((port) =>
  createServer((req, res) => {
    handle(req, res).catch((err: Error) => res.destroy(err));
  }).listen(port, '127.0.0.1'),
);

process.on('SIGTERM', () => {
  writeFileSync(`${RESULTS}/app-sigterm.json`, JSON.stringify({ at: Date.now() }));
  for (const s of servers) s.close();
  setTimeout(() => process.exit(42), 300);
});
// Last: once this file exists, SIGTERM is handled (zz-pid1-sigterm waits for it).
writeFileSync(
  `${RESULTS}/app-started.json`,
  JSON.stringify({ pid: process.pid, ppid: process.ppid, at: Date.now() }),
);
