// Client process for bench/egress.ts. Proxy "-" means direct.
//   egress-client.ts down <proxy> <host:port>            -> {"bytes","seconds"}
//   egress-client.ts up <proxy> <host:port> <MiB>         -> {"bytes","seconds"}
//   egress-client.ts latency <proxy> <host:port> <n>      -> {"ms":[...]} one 1-byte echo per fresh connection
//   egress-client.ts rate <proxy> <host:port> <seconds> <parallel> -> {"tunnels","seconds","cpu_us"}
import { connect, type Socket } from 'node:net';
import { writeBlocks } from '../test/helpers/fixtures/bulk.ts';

const [mode, proxy, target, arg, arg2] = process.argv.slice(2);
const [thost, tport] = [
  target!.slice(0, target!.lastIndexOf(':')),
  Number(target!.slice(target!.lastIndexOf(':') + 1)),
];

function open(): Promise<Socket> {
  return new Promise((resolve, reject) => {
    if (proxy === '-') {
      const s = connect({ host: thost, port: tport, allowHalfOpen: true }, () => resolve(s));
      s.once('error', reject);
      return;
    }
    const [ph, pp] = proxy!.split(':');
    const s = connect({ host: ph, port: Number(pp), allowHalfOpen: true });
    s.setNoDelay(true);
    s.once('error', reject);
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    let head = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      head = Buffer.concat([head, d]);
      const end = head.indexOf('\r\n\r\n');
      if (end < 0) return;
      s.off('data', onData);
      if (!/^HTTP\/1\.[01] 200/.test(head.toString('latin1', 0, 12)))
        return reject(new Error(head.toString()));
      s.pause();
      if (head.length > end + 4) s.unshift(head.subarray(end + 4));
      resolve(s);
    };
    s.on('data', onData);
  });
}

const out = (v: unknown) => process.stdout.write(`${JSON.stringify(v)}\n`);

if (mode === 'down') {
  const s = await open();
  const t0 = process.hrtime.bigint();
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    bytes += d.length;
  });
  s.on('end', () => out({ bytes, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }));
  s.resume();
  s.end();
} else if (mode === 'up') {
  const s = await open();
  const block = Buffer.alloc(1024 * 1024, 7);
  const t0 = process.hrtime.bigint();
  s.on('data', () => {});
  s.on('end', () =>
    out({ bytes: Number(arg) * block.length, seconds: Number(process.hrtime.bigint() - t0) / 1e9 }),
  );
  s.resume();
  writeBlocks(s, block, Number(arg));
} else if (mode === 'latency') {
  const ms: number[] = [];
  for (let i = 0; i < Number(arg); i++) {
    const t0 = process.hrtime.bigint();
    const s = await open();
    await new Promise<void>((resolve) => {
      s.once('data', () => resolve());
      s.resume();
      s.write('x');
    });
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
    s.destroy();
  }
  out({ ms });
} else if (mode === 'rate') {
  const until = Date.now() + Number(arg) * 1000;
  let tunnels = 0;
  const t0 = Date.now();
  const cpu0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: Number(arg2) }, async () => {
      while (Date.now() < until) {
        const s = await open();
        await new Promise<void>((resolve) => {
          s.once('data', () => resolve());
          s.resume();
          s.write('x');
        });
        s.destroy();
        tunnels++;
      }
    }),
  );
  const cpu = process.cpuUsage(cpu0);
  // The client's own CPU: what the load generator costs per tunnel (the same work on every path).
  out({ tunnels, seconds: (Date.now() - t0) / 1000, cpu_us: cpu.user + cpu.system });
} else if (mode === 'hold') {
  // Opens N tunnels, prints "open", keeps them until stdin closes.
  const socks = await Promise.all(Array.from({ length: Number(arg) }, () => open()));
  out({ open: socks.length });
  process.stdin.resume();
  process.stdin.on('end', () => process.exit(0));
}
