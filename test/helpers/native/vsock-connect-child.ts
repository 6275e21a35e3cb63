// Child process for test/unit/transport/vsock-connect.test.ts, run under the vsock shim
// (vsock_shim.c) and the NSM shim (nsm_shim.c). Prints one JSON line.
//   stall <n> <timeoutMs> [cid]: starts n vsock connects that never complete (a host that stopped answering),
//     then, while they are pending, work that needs libuv's thread pool: fs reads, key generation,
//     pbkdf2 and NSM ioctls. Each piece of work records how many connects were still pending when it
//     finished; each connect records how it ended. Also the stalled fds open before and after.
//     Without the vsock shim (the kernel lab, test/lab/), the connects are real: [cid] is one where
//     nobody answers (a real vsock listener with a full backlog answers RST, it does not stall).
//   worker-exit: a worker thread exits with 5 connects pending; prints how many stalled fds its exit
//     closed and how a connect on the main thread ends afterwards.
//   echo <port>: one connect that the shim completes to a Unix echo server; writes, reads the echo.
import { generateKeyPair, pbkdf2 } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { nativeCandidates } from '../../../src/native.ts';
import { openNsmDevice } from '../../../src/nsm/device.ts';
import { VsockTransport } from '../../../src/transport/vsock.ts';

// VMADDR_CID_LOCAL by default: even if the shim were missing, a connect here never leaves the machine.
const CID_LOCAL = 1;
const [mode, ...args] = process.argv.slice(2);
// The shim turns each stalled vsock fd into a pipe's read end (and keeps the write end open), so the
// read ends open in this process count the stalled connects' fds not yet closed.
const pipeReadEnds = () =>
  readdirSync('/proc/self/fd').filter((fd) => {
    try {
      if (!readlinkSync(`/proc/self/fd/${fd}`).startsWith('pipe:')) return false;
      const flags = /^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'));
      return flags !== null && (Number.parseInt(flags[1]!, 8) & 3) === 0;
    } catch {
      return false; // the fd that listed the directory, already closed
    }
  }).length;

if (mode === 'stall') {
  const n = Number(args[0]);
  const timeoutMs = Number(args[1]);
  const cid = args[2] === undefined ? CID_LOCAL : Number(args[2]);
  const transport = new VsockTransport({ connectTimeoutMs: timeoutMs });
  const fdsBefore = pipeReadEnds();
  let pending = n;
  const connects = Array.from({ length: n }, (_, i) =>
    transport.connect(cid, 17002 + i).then(
      (s) => {
        pending--;
        s.destroy();
        return 'connected';
      },
      (e: Error & { code?: string }) => {
        pending--;
        return e.code ?? e.message;
      },
    ),
  );
  const nsm = await openNsmDevice(process.env.NSM_PATH);
  const work: Record<string, () => Promise<unknown>> = {
    'fs.readFile': () => readFile('/proc/self/status'),
    'crypto.generateKeyPair(ec)': () => promisify(generateKeyPair)('ec', { namedCurve: 'P-384' }),
    'crypto.pbkdf2': () => promisify(pbkdf2)('secret', 'salt', 1000, 32, 'sha256'),
    'nsm ioctl': () => nsm.raw(Buffer.from('6947657452616e646f6d', 'hex')),
  };
  const pool = await Promise.all(
    Object.entries(work).flatMap(([name, run]) =>
      Array.from({ length: 4 }, () => run().then(() => ({ name, pendingConnects: pending }))),
    ),
  );
  const ends = await Promise.all(connects);
  await nsm.close();
  console.log(JSON.stringify({ pool, ends, fdsBefore, fdsAfter: pipeReadEnds() }));
} else if (mode === 'echo') {
  const transport = new VsockTransport({ connectTimeoutMs: 5000 });
  const sock = await transport.connect(CID_LOCAL, Number(args[0]));
  sock.end('ping');
  const chunks: Buffer[] = [];
  for await (const c of sock) chunks.push(c as Buffer);
  console.log(JSON.stringify({ reply: Buffer.concat(chunks).toString() }));
} else if (mode === 'worker-exit') {
  // A worker thread leaves with its connects still pending: its poller and their fds go with it, and
  // the main thread's connects work on as before. A worker without connects first, for the pipe read
  // ends a worker closes anyway.
  const { Worker } = await import('node:worker_threads');
  const addonPath = nativeCandidates().find((p) => existsSync(p));
  const exitClosing = async (connects: number) => {
    const source = `
      const { parentPort } = require('node:worker_threads');
      const addon = require(${JSON.stringify(addonPath)});
      for (let i = 0; i < ${connects}; i++) addon.vsockConnect(1, 17002, -1).catch(() => {});
      parentPort.postMessage('pending');`;
    const worker = new Worker(source, { eval: true });
    await new Promise((resolve) => worker.once('message', resolve));
    const before = pipeReadEnds();
    await worker.terminate();
    return before - pipeReadEnds();
  };
  // Other pipes of the runtime may close during a measurement and only ever add to a count, so the
  // smallest of three empty exits is the baseline and the count with connects is at least 5 above it.
  const baseline = Math.min(await exitClosing(0), await exitClosing(0), await exitClosing(0));
  const closedByExit = (await exitClosing(5)) - baseline;
  const transport = new VsockTransport({ connectTimeoutMs: 100 });
  const after = await transport.connect(CID_LOCAL, 17002).then(
    () => 'connected',
    (e: Error & { code?: string }) => e.code,
  );
  console.log(JSON.stringify({ closedByExit, after }));
} else {
  throw new Error(`unknown mode ${mode}`);
}
