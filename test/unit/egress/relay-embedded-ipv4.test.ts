// The host relay judges what a name resolves to by the IPv4 address an IPv6 answer embeds: a DNS answer
// of ::169.254.169.254 (IPv4-compatible), ::ffff:0:169.254.169.254 (SIIT) or 64:ff9b::a9fe:a9fe (NAT64)
// is the metadata address, refused like its IPv4 spelling. Full path: proxy -> emulated vsock -> relay.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { rawExchange, startPath, startTcp } from '../../helpers/egress-fixture.ts';

test('a name resolving to an IPv6 spelling of a denied or loopback IPv4 address is refused by the relay', async (t) => {
  const port = await startTcp(t, (s) => s.end('reached'));
  const answers: Record<string, string> = {
    'compat.test': '::169.254.169.254',
    'siit.test': '::ffff:0:169.254.169.254',
    'nat64.test': '64:ff9b::a9fe:a9fe',
    'loop-compat.test': '::127.0.0.1',
    'loop-siit.test': '::ffff:0:7f00:1',
  };
  let looked = 0;
  const { proxyPort } = await startPath(
    t,
    { allow: ['**', '::/0'], deny: ['169.254.169.254'] },
    {
      relay: {
        lookup: async (h) => {
          looked++;
          return answers[h] ? [{ address: answers[h]!, family: 6 }] : [];
        },
      },
    },
  );
  for (const name of ['compat.test', 'siit.test', 'nat64.test']) {
    const r = await rawExchange(proxyPort, `CONNECT ${name}:${port} HTTP/1.1\r\n\r\n`);
    assert.match(r, /^HTTP\/1\.1 403 [\s\S]*169\.254\.169\.254 \(in 169\.254\.169\.254\/32/, `${name}: ${r}`);
  }
  // Let in only by `**`: the loopback they embed stays closed, as 127.0.0.1 itself does.
  for (const name of ['loop-compat.test', 'loop-siit.test']) {
    const r = await rawExchange(proxyPort, `CONNECT ${name}:${port} HTTP/1.1\r\n\r\n`);
    assert.match(r, /^HTTP\/1\.1 403 [\s\S]*127\.0\.0\.1 \(in 127\.0\.0\.0\/8/, `${name}: ${r}`);
  }
  assert.equal(looked, 5);
});
