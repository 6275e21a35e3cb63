// Transparent egress on Debian's 6.1 kernel (docs/transparent-egress.md): `cloister enclave` with
// `transparent.enabled` in a network namespace of its own (like an enclave: lo only) adds its route and
// its legacy-iptables nat rules through the addon (iptable_nat, xt_REDIRECT, xt_tcpudp loaded at boot),
// and curl and Node with no proxy variables get exactly the allowlist, over real AF_VSOCK to
// `cloister host`'s relay in the guest's own namespace. Names resolve through the DNS stub and DoH (a DoH
// server on 10.77.0.2:443 answers lab.test -> 10.77.0.1), so nothing needs the guest's resolver. After
// cloister exits, the route and the rules are gone.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:https';
import { join } from 'node:path';
import dnsPacket from 'dns-packet';
import { writeSelfSigned } from '../../helpers/fixtures/tls.ts';
import { minimalManifest, type Scenario, start } from '../guest/lab.ts';
import { attachHost } from '../guest/short-enclave.ts';

const APP_SERVER = '10.77.0.1';
const DOH_SERVER = '10.77.0.2';
const DENIED_SERVER = '10.77.0.3';

export const scenario: Scenario = {
  title:
    'transparent egress: route + nat rules via the addon, curl and Node without proxy variables get the allowlist; rules gone at exit',
  phase: 'pre',
  timeoutMs: 240_000,
  async run(ctx) {
    const ip = (...args: string[]) => execFileSync('ip', args);
    ip('link', 'set', 'lo', 'up');
    ctx.defer(() => void ip('link', 'set', 'lo', 'down'));
    for (const a of [APP_SERVER, DOH_SERVER, DENIED_SERVER]) {
      ip('addr', 'add', `${a}/32`, 'dev', 'lo');
      ctx.defer(() => void ip('addr', 'del', `${a}/32`, 'dev', 'lo'));
    }
    const key = join(ctx.tmp, 'key.pem');
    const cert = join(ctx.tmp, 'cert.pem');
    writeSelfSigned(key, cert, `DNS:lab.test,IP:${APP_SERVER},IP:${DOH_SERVER},IP:${DENIED_SERVER}`);
    const tls = { key: readFileSync(key), cert: readFileSync(cert) };
    const dohQueries: string[] = [];
    const server = createServer(tls, (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        if (req.url === '/dns-query') {
          const q = dnsPacket.decode(Buffer.concat(chunks));
          const name = q.questions?.[0]?.name ?? '';
          dohQueries.push(name);
          const known = name === 'lab.test';
          res.writeHead(200, { 'content-type': 'application/dns-message' });
          return void res.end(
            dnsPacket.encode({
              type: 'response',
              id: q.id,
              flags: known ? 0 : 3,
              questions: q.questions,
              answers: known ? [{ type: 'A', name, ttl: 60, data: APP_SERVER }] : [],
            }),
          );
        }
        res.end(`hello ${req.headers.host} ${req.url}`);
      });
    });
    await new Promise<void>((r) => server.listen(443, '0.0.0.0', r));
    ctx.defer(() => void server.close());
    const server2 = createServer(tls, (req, res) => res.end(`hello ${req.headers.host} ${req.url}`));
    await new Promise<void>((r) => server2.listen(8443, '0.0.0.0', r));
    ctx.defer(() => void server2.close());

    const manifest = join(ctx.tmp, 'enclaver.yaml');
    writeFileSync(
      manifest,
      `${minimalManifest('lab-transparent')}egress:\n  allow:\n    - lab.test:8443\n    - ${DOH_SERVER}:443\n`,
    );
    writeFileSync(
      join(ctx.tmp, 'cloister.yaml'),
      `nsm:\n  kind: software\n  state_dir: ${ctx.tmp}/nsm\nlog:\n  level: debug\ntransparent:\n  enabled: true\n  resolver: doh\n  doh_url: https://${DOH_SERVER}/dns-query\n  doh_ca_file: ${cert}\n`,
    );
    writeFileSync(join(ctx.tmp, 'resolv.conf'), 'nameserver 192.0.2.99\n');
    const out = join(ctx.tmp, 'results');
    const curl = (url: string) => `curl -sS --max-time 30 --cacert ${cert} ${url}`;
    const node = (url: string) =>
      `env NODE_EXTRA_CA_CERTS=${cert} ${ctx.env.node} -e "require('https').get('${url}',r=>{let b='';r.on('data',d=>b+=d);r.on('end',()=>console.log(b))}).on('error',e=>{console.log(e.code);process.exit(1)})"`;
    writeFileSync(
      join(ctx.tmp, 'app.sh'),
      `unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy NO_PROXY no_proxy
check() { name=$1; shift; if o=$("$@" 2>&1); then r=ok; else r=fail; fi; echo "$name $r $(echo "$o" | tr '\\n' ' ')" >> ${out}; }
iptables-legacy-save -t nat > ${ctx.tmp}/nat-during 2>&1
ip route show > ${ctx.tmp}/route-during
check denied-ip ${curl(`https://${DENIED_SERVER}:8443/`)}
check denied-name ${curl('https://denied.test:8443/')}
check curl-name ${curl('https://lab.test:8443/curl')}
check node-name ${node('https://lab.test:8443/node')}
check wrong-port ${curl(`https://${APP_SERVER}/`)}
kill -TERM $PPID
`,
    );
    // Its own network and mount namespaces: the rules and resolv.conf (a bind mount of a temp file) are
    // the enclave's alone; the wrapper prints what is left once cloister has exited.
    const enclave = start(ctx, 'unshare', [
      '-n',
      '-m',
      '--propagation',
      'private',
      'sh',
      '-c',
      `mount --bind ${ctx.tmp}/resolv.conf /etc/resolv.conf && ${ctx.env.bin} enclave --transport vsock --parent-cid 1 --no-bootstrap -f ${manifest} -- sh ${ctx.tmp}/app.sh; echo "== after"; ip route show; iptables-legacy-save -t nat; cat /etc/resolv.conf`,
    ]);
    const host = attachHost(ctx, manifest, 120);
    await enclave.exited;
    await host.stop(5000);
    const log = enclave.out();
    const results = new Map(
      readFileSync(out, 'utf8')
        .trim()
        .split('\n')
        .map((l) => {
          const [name, r, ...rest] = l.split(' ');
          return [name!, { ok: r === 'ok', out: rest.join(' ').trim() }] as const;
        }),
    );
    const show = () =>
      `${[...results].map(([k, v]) => `${k}: ${v.ok} ${v.out}`).join('\n')}\n${log.slice(-4000)}`;
    assert.match(readFileSync(`${ctx.tmp}/route-during`, 'utf8'), /^default dev lo .*src 127\.0\.0\.1/m);
    assert.match(
      readFileSync(`${ctx.tmp}/nat-during`, 'utf8'),
      /-A OUTPUT ! -d 127\.0\.0\.0\/8 -p tcp -j REDIRECT --to-ports \d+/,
    );
    assert.equal(results.get('curl-name')?.out, 'hello lab.test:8443 /curl', show());
    assert.equal(results.get('node-name')?.out, 'hello lab.test:8443 /node', show());
    for (const refused of ['denied-ip', 'denied-name', 'wrong-port'])
      assert.equal(results.get(refused)?.ok, false, `${refused} should fail\n${show()}`);
    assert.ok(dohQueries.includes('lab.test'), `DoH saw: ${dohQueries.join(', ')}`);
    assert.ok(!dohQueries.includes('denied.test'), 'a denied name never left the enclave');
    const after = log.slice(log.indexOf('== after'));
    assert.doesNotMatch(after, /default dev lo/, after);
    assert.doesNotMatch(after, /REDIRECT/, after);
    assert.match(after, /nameserver 192\.0\.2\.99/, after);
    ctx.note('transparent_checks', [...results.keys()].length);
  },
};
