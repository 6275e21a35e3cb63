// A target a deny rule matches is refused by the enclave's proxy with 403 naming that rule; one that no
// rule covers, with 403 saying so. Neither reaches vsock.
import assert from 'node:assert/strict';
import type { Scenario } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';
import { proxyConnect } from '../guest/tunnel.ts';

export const scenario: Scenario = pid1Scenario({
  title: 'egress: a denied target gets 403 naming the rule',
  async run(ctx) {
    const r = await proxyConnect('127.0.0.2:443');
    assert.equal(r.status, 403, r.head);
    const body = r.body.toString();
    assert.match(body, /blocked by egress security policy/);
    assert.match(body, /127\.0\.0\.2:443 is denied by rule '127\.0\.0\.2' \(egress\.deny\[0\]\)/);
    const other = await proxyConnect('10.1.2.3:443');
    assert.equal(other.status, 403, other.head);
    assert.match(other.body.toString(), /10\.1\.2\.3:443 is not in the egress policy/);
    ctx.note('body', body.trim());
  },
});
