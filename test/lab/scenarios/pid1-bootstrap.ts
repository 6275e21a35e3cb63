// The single executable is the guest's PID 1 (as the first command of an enclave image) and does an
// enclave's bootstrap on a real kernel: `lo` goes from down (as the kernel left it) to up through the
// SIOCSIFFLAGS ioctl, and the NSM's random bytes are credited with RNDADDENTROPY.
import assert from 'node:assert/strict';
import { readFileSync, readlinkSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import type { Scenario } from '../guest/lab.ts';
import { pid1Host } from '../guest/pid1-host.ts';

const IFF_UP = 0x1;
const IFF_LOOPBACK = 0x8;

export const scenario: Scenario = {
  title: 'PID 1 bootstrap: lo down -> up through the real ioctl, entropy credited with RNDADDENTROPY',
  phase: 'pid1',
  async run(ctx) {
    assert.equal(readlinkSync('/proc/1/exe'), ctx.env.bin, 'PID 1 is the single executable');
    assert.match(readFileSync('/proc/1/cmdline', 'utf8'), /^[^\0]*\0enclave\0/);
    const atBoot = Number(readFileSync(`${ctx.env.results}/lo-flags-at-boot`, 'utf8'));
    assert.equal(atBoot & IFF_LOOPBACK, IFF_LOOPBACK);
    assert.equal(atBoot & IFF_UP, 0, 'lo is down when the kernel hands over');
    const host = await pid1Host(ctx);
    const now = Number(readFileSync('/sys/class/net/lo/flags', 'utf8'));
    assert.equal(now & IFF_UP, IFF_UP, 'lo is up');
    // And it carries traffic.
    const server = createServer((s) => s.end('pong')).listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    const port = (server.address() as { port: number }).port;
    const got = await new Promise<string>((resolve, reject) => {
      let buf = '';
      connect(port, '127.0.0.1')
        .on('data', (d) => {
          buf += d;
        })
        .on('end', () => resolve(buf))
        .on('error', reject);
    });
    server.close();
    assert.equal(got, 'pong');
    const log = host.out();
    assert.match(log, /Bringing up loopback interface/);
    assert.match(log, /Seeding \/dev\/random with entropy from nsm device/);
    assert.match(log, /"credited":true/, 'RNDADDENTROPY credited the bytes (PID 1 has CAP_SYS_ADMIN)');
  },
};
