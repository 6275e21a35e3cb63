// One process of bench/transparent.ts, each run by it inside a network namespace it made:
//   transparent-side.ts servers                 lo up, 10.77.0.1 on lo, source/sink/echo on 9001-9003; "ready"
//   transparent-side.ts relay <vsock-dir>       the host relay; bench.test resolves to 10.77.0.1; "ready"
//   transparent-side.ts enclave <vsock-dir>     egress proxy with transparent mode on (route, nat rules,
//                                               DNS stub on 127.0.0.1:53); prints the proxy's port
//   transparent-side.ts dns <seconds> <window> <name>   DNS load on 127.0.0.1:53 -> {"answers","seconds","rcode"}

import { execFileSync } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { createServer } from 'node:net';
import dnsPacket from 'dns-packet';
import { startEgressProxy } from '../src/egress/proxy.ts';
import { startEgressRelay } from '../src/egress/relay.ts';
import { createLogger } from '../src/log/logger.ts';
import { bringUpLoopback } from '../src/system/index.ts';
import { EmulatedTransport } from '../src/transport/emulated.ts';
import { writeBlocks } from '../test/helpers/fixtures/bulk.ts';
import { benchEgressPlan } from './measure.ts';

export const SERVER = '10.77.0.1';
export const PORTS = { source: 9001, sink: 9002, echo: 9003 };
const MIB = Number(process.env.BENCH_MIB ?? 1024);

const [role, a1, a2, a3] = process.argv.slice(2);
const logger = createLogger({ level: 'warn' });
const say = (v: unknown) => process.stdout.write(`${typeof v === 'string' ? v : JSON.stringify(v)}\n`);

if (role === 'servers') {
  bringUpLoopback();
  execFileSync('ip', ['addr', 'add', `${SERVER}/32`, 'dev', 'lo']);
  const block = Buffer.alloc(1024 * 1024, 1);
  const serve = (port: number, handler: (s: import('node:net').Socket) => void) =>
    new Promise<void>((r) =>
      createServer({ allowHalfOpen: true }, (s) => {
        s.on('error', () => {});
        handler(s);
      }).listen(port, SERVER, r),
    );
  await serve(PORTS.source, (s) => {
    s.resume();
    writeBlocks(s, block, MIB);
  });
  await serve(PORTS.sink, (s) => {
    s.on('end', () => s.end());
    s.resume();
  });
  await serve(PORTS.echo, (s) => s.pipe(s));
  say('ready');
} else if (role === 'relay') {
  await startEgressRelay(
    {},
    {
      transport: new EmulatedTransport(a1!, 2),
      logger,
      resolve: async () => [{ address: SERVER, ttl: 300 }],
    },
  );
  say('ready');
} else if (role === 'enclave') {
  const plan = benchEgressPlan([SERVER, 'bench.test'], true);
  const svc = await startEgressProxy(plan, { transport: new EmulatedTransport(a1!, 16), logger });
  say(String(svc.port));
  process.on('SIGTERM', () => void svc.close().then(() => process.exit(0)));
} else if (role === 'dns') {
  // Keeps `window` queries in flight for `seconds`; counts answers.
  const seconds = Number(a1);
  const window = Number(a2);
  const name = a3!;
  const sock = createSocket('udp4');
  let answers = 0;
  let id = 0;
  let rcode = '';
  const until = Date.now() + seconds * 1000;
  const t0 = Date.now();
  const send = () =>
    sock.send(
      dnsPacket.encode({
        type: 'query',
        id: id++ & 0xffff,
        flags: dnsPacket.RECURSION_DESIRED,
        questions: [{ type: 'A', name }],
      }),
      53,
      '127.0.0.1',
    );
  await new Promise<void>((resolve) => {
    sock.on('message', (m) => {
      answers++;
      rcode ||= String((dnsPacket.decode(m) as unknown as { rcode: string }).rcode);
      if (Date.now() < until) send();
      else if (--inflight === 0) resolve();
    });
    let inflight = window;
    for (let i = 0; i < window; i++) send();
  });
  say({ answers, seconds: (Date.now() - t0) / 1000, rcode });
  sock.close();
}
if (role !== 'enclave') process.on('SIGTERM', () => process.exit(0));
