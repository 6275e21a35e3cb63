// The lab's virtio-vsock device, backed outside QEMU by rust-vmm's vhost-device-vsock (built by
// this file with cargo on first use, pinned, cached): the guest gets CID 3 on a real virtio-vsock device whose
// host end is the "hybrid vsock" Unix socket, so `cloister host --transport hybrid` on this machine (outside
// the VM) can drive `cloister enclave` inside it. Nothing reaches this machine's own vsock: the device's
// host end is a user-space process, not the kernel's vhost-vsock.
//
// The guest scenario hybrid-outside-host.ts asks for the outside host by writing hybrid-request.json into
// the results directory; serveHybridRequests() (running beside QEMU) answers with hybrid-done.json.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { freePort } from '../helpers/fixtures/ports.ts';

export const VHOST_DEVICE_VSOCK_VERSION = '0.2.0';
export const GUEST_CID = 3;

export function vhostDeviceVsockPath(): string {
  const cache = process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache');
  return join(
    cache,
    'cloister-lab',
    `vhost-device-vsock-${VHOST_DEVICE_VSOCK_VERSION}`,
    'bin',
    'vhost-device-vsock',
  );
}

/** `cargo install vhost-device-vsock@<pinned> --locked` into the lab's cache (once; minutes). */
function installVhostDeviceVsock(bin: string): void {
  const root = dirname(dirname(bin));
  process.stderr.write(`lab: building vhost-device-vsock ${VHOST_DEVICE_VSOCK_VERSION} with cargo (once)\n`);
  const r = spawnSync(
    'cargo',
    ['install', `vhost-device-vsock@${VHOST_DEVICE_VSOCK_VERSION}`, '--locked', '--root', root],
    { stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' },
  );
  if (r.status !== 0 || !existsSync(bin))
    throw new Error(
      `vhost-device-vsock is missing and \`cargo install vhost-device-vsock@${VHOST_DEVICE_VSOCK_VERSION} --locked\` ` +
        `failed (${r.error?.message ?? r.stderr?.slice(-500)}): the hybrid scenario needs it`,
    );
}

export interface VsockDevice {
  qemuArgs: string[];
  udsPath: string;
  stop(): void;
}

/** Starts vhost-device-vsock; the QEMU arguments give the guest the device (memory must be shared). */
export async function startVsockDevice(work: string, memoryMb: number): Promise<VsockDevice> {
  const bin = vhostDeviceVsockPath();
  if (!existsSync(bin)) installVhostDeviceVsock(bin);
  const socket = join(work, 'vhost-user-vsock.sock');
  const udsPath = join(work, 'vm.vsock');
  const child = spawn(bin, ['--guest-cid', String(GUEST_CID), '--socket', socket, '--uds-path', udsPath], {
    stdio: ['ignore', 'inherit', 'inherit'],
  });
  const end = Date.now() + 20_000;
  while (!existsSync(socket)) {
    if (child.exitCode !== null) throw new Error(`vhost-device-vsock exited ${child.exitCode}`);
    if (Date.now() > end) throw new Error('vhost-device-vsock did not create its socket in 20 s');
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    udsPath,
    qemuArgs: [
      ...['-object', `memory-backend-memfd,id=mem,size=${memoryMb}M,share=on`, '-numa', 'node,memdev=mem'],
      ...['-chardev', `socket,id=vvsock,path=${socket}`, '-device', 'vhost-user-vsock-pci,chardev=vvsock'],
    ],
    stop: () => child.kill('SIGTERM'),
  };
}

/**
 * Watches for the guest's request and runs `cloister host --transport hybrid --attach-cid 3` here, outside:
 * it must print the enclave's log stream, forward an ingress request to the app inside, and on SIGTERM
 * exit 109 leaving the enclave running. The verdict goes to hybrid-done.json for the guest to report.
 */
export function serveHybridRequests(o: { results: string; bin: string; udsPath: string }): () => void {
  let host: ChildProcess | null = null;
  let stopped = false;
  const run = async () => {
    const port = await freePort();
    const tlsPort = await freePort(); // every manifest port gets a free host port: this machine is shared
    let out = '';
    let err = '';
    host = spawn(
      o.bin,
      [
        ...['host', '--transport', 'hybrid', '--uds-path', o.udsPath, '--attach-cid', String(GUEST_CID)],
        ...[
          '-f',
          join(o.results, 'config', 'enclaver.yaml'),
          '-p',
          `${port}:8080`,
          '-p',
          `${tlsPort}:8443`,
          '--listen-address',
          '127.0.0.1',
        ],
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    host.stdout!.on('data', (d: Buffer) => {
      out += d;
    });
    host.stderr!.on('data', (d: Buffer) => {
      err += d;
    });
    const exited = new Promise<number | null>((r) => host!.on('exit', (code) => r(code)));
    const verdict: Record<string, unknown> = {};
    try {
      const end = Date.now() + 90_000;
      while (!out.includes('Enclave initialized')) {
        if (host.exitCode !== null) throw new Error(`cloister host exited ${host.exitCode}`);
        if (Date.now() > end) throw new Error('no log stream through the hybrid socket in 90 s');
        await new Promise((r) => setTimeout(r, 200));
      }
      verdict.logStream = true;
      const res = await fetch(`http://127.0.0.1:${port}/whoami`, { signal: AbortSignal.timeout(60_000) });
      verdict.ingress = await res.json();
      host.kill('SIGTERM');
      verdict.hostExit = await exited;
      verdict.ok = (verdict.ingress as { port?: number }).port === 8080 && verdict.hostExit === 109;
    } catch (e) {
      host.kill('SIGKILL');
      verdict.ok = false;
      verdict.error = (e as Error).message;
    }
    verdict.stderrTail = err.slice(-2000);
    writeFileSync(join(o.results, 'hybrid-done.json'), JSON.stringify(verdict));
  };
  const timer = setInterval(() => {
    if (stopped || host || !existsSync(join(o.results, 'hybrid-request.json'))) return;
    JSON.parse(readFileSync(join(o.results, 'hybrid-request.json'), 'utf8'));
    void run();
  }, 250);
  return () => {
    stopped = true;
    clearInterval(timer);
    host?.kill('SIGKILL');
  };
}
