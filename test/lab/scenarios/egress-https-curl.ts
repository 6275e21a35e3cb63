// curl, as an unmodified app would, reaches an HTTPS server on the guest's loopback through the egress
// proxy, real AF_VSOCK and the host relay; TLS runs end to end (the proxy sees only CONNECT).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { promisify } from 'node:util';
import type { Scenario } from '../guest/lab.ts';
import { EGRESS_PROXY, pid1Scenario } from '../guest/pid1-host.ts';

export const scenario: Scenario = pid1Scenario({
  title: 'egress: curl reaches an HTTPS server through the proxy, real vsock and the relay',
  async run(ctx) {
    const tls = '/tmp/lab/config/tls';
    const server = createServer(
      { key: readFileSync(`${tls}/key.pem`), cert: readFileSync(`${tls}/cert.pem`) },
      (req, res) => res.end(`hello from the guest over TLS: ${req.url}`),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    ctx.defer(() => void server.close());
    const port = (server.address() as { port: number }).port;
    // Not execFileSync: the HTTPS server lives in this very process.
    const { stdout: out } = await promisify(execFile)('curl', [
      '-sS',
      '--max-time',
      '30',
      '--proxy',
      EGRESS_PROXY,
      '--cacert',
      `${tls}/cert.pem`,
      `https://127.0.0.1:${port}/lab`,
    ]);
    assert.equal(out, 'hello from the guest over TLS: /lab');
  },
});
