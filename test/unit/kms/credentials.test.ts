// The proxy's credentials expire during a run and are refreshed (odyn 0.5 never refreshed them,
// Enclaver #218). A fake credentials server on 127.0.0.1 hands out 3-second credentials, reached through
// the egress proxy (absolute-form HTTP), and the emulator accepts each only until it expires. Time is a
// ManualClock shared by the server, the emulator's check and the proxy's credential chain: the test steps
// past the expiry instead of sleeping through it.
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { CreateKeyCommand, DecryptCommand, EncryptCommand } from '@aws-sdk/client-kms';
import type { EmulatorCredentials } from '../../../src/kms-emulator/server.ts';
import { PROXY_CREDS, startHarness } from '../../helpers/kms-harness.ts';
import { ManualClock } from '../../helpers/manual-clock.ts';

const LIFETIME_MS = 3000;

/** Waits for I/O (the refresh goes through the egress proxy), polling; not a wait for a timer. */
async function waitFor(done: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (done()) return;
    await sleep(10);
  }
  assert.fail(`timed out waiting for ${what}`);
}

function credentialServer(clock: ManualClock) {
  const issued = new Map<string, EmulatorCredentials & { expires: number }>();
  const requests: string[] = [];
  let n = 0;
  const imdsToken = 'imds-session-token';
  const issue = () => {
    n++;
    const c = {
      accessKeyId: `ASIATEST${n}`,
      secretAccessKey: `secret-${n}`,
      sessionToken: `token-${n}`,
      expires: clock.now() + LIFETIME_MS,
    };
    issued.set(c.accessKeyId, c);
    return JSON.stringify({
      Code: 'Success',
      AccessKeyId: c.accessKeyId,
      SecretAccessKey: c.secretAccessKey,
      Token: c.sessionToken,
      Expiration: new Date(c.expires).toISOString(),
    });
  };
  const server: Server = createServer((req: IncomingMessage, res) => {
    requests.push(`${req.method} ${req.url}`);
    const reply = (status: number, body: string) =>
      res.writeHead(status, { 'content-type': 'application/json' }).end(body);
    if (req.url === '/container-creds') {
      if (req.headers.authorization !== 'container-auth') return reply(401, '{}');
      return reply(200, issue());
    }
    if (req.url === '/latest/api/token' && req.method === 'PUT') {
      if (!req.headers['x-aws-ec2-metadata-token-ttl-seconds']) return reply(400, '');
      return reply(200, imdsToken);
    }
    if (req.headers['x-aws-ec2-metadata-token'] !== imdsToken) return reply(401, '');
    if (req.url === '/latest/meta-data/iam/security-credentials/') return reply(200, 'enclave-role');
    if (req.url === '/latest/meta-data/iam/security-credentials/enclave-role') return reply(200, issue());
    reply(404, '');
  });
  return {
    server,
    requests,
    issuedCount: () => n,
    /** What the emulator accepts: issued credentials that have not expired yet. */
    lookup: (id: string) => {
      const c = issued.get(id);
      return c && c.expires > clock.now() ? c : undefined;
    },
    listen: () =>
      new Promise<string>((resolve) =>
        server.listen(0, '127.0.0.1', () =>
          resolve(`http://127.0.0.1:${(server.address() as AddressInfo).port}`),
        ),
      ),
  };
}

for (const kind of ['container', 'imds'] as const) {
  test(`${kind} credentials are refreshed before they expire`, async (t) => {
    const clock = new ManualClock();
    const creds = credentialServer(clock);
    const base = await creds.listen();
    t.after(() => new Promise<void>((r) => creds.server.close(() => r())));
    const seen = new Set<string>();
    const env: NodeJS.ProcessEnv =
      kind === 'container'
        ? {
            AWS_CONTAINER_CREDENTIALS_FULL_URI: `${base}/container-creds`,
            AWS_CONTAINER_AUTHORIZATION_TOKEN: 'container-auth',
            AWS_EC2_METADATA_DISABLED: 'true',
          }
        : { AWS_EC2_METADATA_SERVICE_ENDPOINT: base };
    const h = await startHarness({
      proxyEnv: env,
      emulatorCredentials: (id) => {
        if (id === PROXY_CREDS.accessKeyId) return PROXY_CREDS; // the test's own direct client
        const c = creds.lookup(id);
        if (c) seen.add(id);
        return c;
      },
      proxyOptions: { credentials: { clock } },
    });
    t.after(() => h.close());
    const key = (await h.direct.send(new CreateKeyCommand({}))).KeyMetadata!.KeyId!;
    const enc = await h.viaProxy.send(
      new EncryptCommand({ KeyId: key, Plaintext: Buffer.from('still works') }),
    );
    assert.equal(creds.issuedCount(), 1);
    assert.equal(clock.pending(), 1, 'a refresh is scheduled');
    // Into the refresh margin (half the lifetime): the timer refreshes before any call needs it.
    clock.advance(LIFETIME_MS / 2 + 100);
    await waitFor(() => creds.issuedCount() === 2, 'the scheduled refresh');
    // Outlive the first credentials: the emulator refuses them from now on.
    clock.advance(LIFETIME_MS / 2 + 400);
    const dec = await h.viaProxy.send(new DecryptCommand({ CiphertextBlob: enc.CiphertextBlob }));
    assert.equal(Buffer.from(dec.Plaintext!).toString(), 'still works');
    assert.ok(creds.issuedCount() >= 2, `credentials fetched ${creds.issuedCount()} time(s)`);
    assert.ok(seen.size >= 2, `KMS saw ${seen.size} credential set(s)`);
    if (kind === 'imds')
      assert.ok(creds.requests.includes('PUT /latest/api/token'), 'IMDSv2 token flow used');
  });
}
