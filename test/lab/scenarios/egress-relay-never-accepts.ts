// Issue 10's case, which only a kernel with vsock loopback can host: the relay's vsock port is bound and
// listening but never accepts. 50 egress tunnels asked at once must each get an answer within
// egress.connect_timeout_ms (504 once a connection sits unaccepted in the backlog, 502 once the backlog
// is full and the kernel refuses), and meanwhile the proxy must keep answering other requests at once:
// no tunnel waiting on vsock may hold the event loop or a thread.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Scenario } from '../guest/lab.ts';
import { startEgressEnclave } from '../guest/short-enclave.ts';
import { proxyConnect } from '../guest/tunnel.ts';

const PROXY_PORT = 10200;
const TIMEOUT_MS = 3000;
const TUNNELS = 50;

interface VsockAddon {
  vsockSocket(): number;
  vsockBind(fd: number, cid: number, port: number): void;
  vsockListen(fd: number, backlog: number): void;
  closeFd(fd: number): void;
}

export const scenario: Scenario = {
  title: `egress: a relay that never accepts; ${TUNNELS} tunnels each answered within the connect timeout, the proxy stays responsive`,
  phase: 'pre',
  timeoutMs: 120_000,
  async run(ctx) {
    // The relay's port: bound and listening on the guest's CID, never accepting.
    const addon = createRequire(import.meta.url)(
      join(ctx.env.repo, 'native', 'build', 'Release', 'cloister_native.node'),
    ) as VsockAddon;
    const fd = addon.vsockSocket();
    addon.vsockBind(fd, 0xffffffff, 17002);
    addon.vsockListen(fd, 1);
    ctx.defer(() => addon.closeFd(fd));
    await startEgressEnclave(ctx, {
      name: 'lab-never-accepts',
      proxyPort: PROXY_PORT,
      settings: `egress:\n  connect_timeout_ms: ${TIMEOUT_MS}\n`,
    });

    const started = Date.now();
    const pending = Array.from({ length: TUNNELS }, () =>
      proxyConnect('127.0.0.1:443', PROXY_PORT).then((r) => ({ status: r.status, ms: Date.now() - started })),
    );
    // While they wait on vsock, a request that needs no relay is answered at once.
    const during = Date.now();
    const denied = await proxyConnect('10.9.9.9:443', PROXY_PORT);
    assert.equal(denied.status, 403, denied.head);
    ctx.note('denied_answer_ms_while_pending', Date.now() - during);
    const answers = await Promise.all(pending);
    const statuses: Record<number, number> = {};
    for (const a of answers) statuses[a.status] = (statuses[a.status] ?? 0) + 1;
    ctx.note('statuses', statuses);
    ctx.note('slowest_ms', Math.max(...answers.map((a) => a.ms)));
    for (const a of answers) assert.ok(a.status === 504 || a.status === 502, `status ${a.status}`);
    // The connect timeout bounds every answer (plus emulation slack).
    assert.ok(Math.max(...answers.map((a) => a.ms)) < TIMEOUT_MS + 20_000, JSON.stringify(answers));
  },
};
