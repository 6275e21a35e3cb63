// Transparent egress (src/egress/transparent.ts, dns-stub.ts; src/system/netfilter.ts, route.ts) end to
// end: `cloister enclave` in its own network namespace with transparent mode on, real clients with no
// proxy variables (a static Go binary, curl, Python, Node, boto3), the relay and the servers in another
// namespace (test/helpers/transparent-harness.ts). iptables-legacy is used only to look at the rules.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { tempDir } from '../../helpers/egress-fixture.ts';
import { IMDS_ACCESS_KEY, NAMES } from '../../helpers/fixtures/transparent-upstreams.ts';
import {
  goClient,
  requireTool,
  runTransparentEnclave,
  startUpstreams,
} from '../../helpers/transparent-harness.ts';

const MANIFEST = `version: v1
name: transparent-test
target: t:latest
sources:
  app: a:latest
egress:
  allow:
    - allowed.test:443
    - other.test:8443
    - 10.1.3.1:443
    - 169.254.169.254:80
    - doh.test:443
kms_proxy:
  listen_port: 9999
`;

const METRICS_PORT = 9109;
const settings = (extra = '') => `log:
  level: debug
api:
  metrics_port: ${METRICS_PORT}
transparent:
  enabled: true
${extra}`;

/** Shell: `check NAME command...` appends "NAME ok|fail <output on one line>" to $OUT/results. */
const PRELUDE = `unset HTTP_PROXY HTTPS_PROXY http_proxy https_proxy NO_PROXY no_proxy
check() { name=$1; shift; if out=$("$@" 2>&1); then r=ok; else r=fail; fi
  echo "$name $r $(echo "$out" | tr '\\n' ' ')" >> $OUT/results; }
`;

/** Python: a DNS query for argv[1] (type A) to argv[2]:53 over UDP; prints the rcode and the addresses. */
const PY_DNS = `import socket,struct,sys
name,server=sys.argv[1],sys.argv[2]
q=struct.pack('>HHHHHH',0x1234,0x0100,1,0,0,0)+b''.join(bytes([len(l)])+l.encode() for l in name.split('.'))+bytes(1)+struct.pack('>HH',1,1)
s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(3);s.sendto(q,(server,53))
r=s.recv(4096)
def skip(i):
  while r[i]:
    if r[i]>=192: return i+2
    i+=r[i]+1
  return i+1
i=skip(12)+4;ips=[]
for _ in range(struct.unpack('>H',r[6:8])[0]):
  i=skip(i);t,c,ttl,l=struct.unpack('>HHIH',r[i:i+10]);i+=10
  if t==1: ips.append(socket.inet_ntoa(r[i:i+4]))
  i+=l
print(r[3]&15,' '.join(ips))
`;

function results(outDir: string): Map<string, { ok: boolean; out: string }> {
  const m = new Map<string, { ok: boolean; out: string }>();
  for (const line of readFileSync(join(outDir, 'results'), 'utf8').split('\n')) {
    const [name, r, ...rest] = line.split(' ');
    if (name) m.set(name, { ok: r === 'ok', out: rest.join(' ').trim() });
  }
  return m;
}

test('transparent egress: clients with no proxy variables get exactly the allowlist, by name and by IP; rules are gone after exit', async (t) => {
  requireTool(
    'iptables-legacy-save',
    ['--version'],
    'iptables-legacy (Debian package iptables) to inspect the rules',
  );
  const go = goClient();
  const up = await startUpstreams(t);
  const curl = (url: string) => `curl -sS --max-time 5 --cacert $CA ${url}`;
  const py = (url: string) =>
    `python3 -c "import ssl,urllib.request;print(urllib.request.urlopen('${url}',timeout=5,context=ssl.create_default_context(cafile='$CA')).read().decode())"`;
  const node = (url: string) =>
    `env NODE_EXTRA_CA_CERTS=$CA ${process.execPath} -e "require('https').get('${url}',r=>{let b='';r.on('data',d=>b+=d);r.on('end',()=>console.log(b))}).on('error',e=>{console.log(e.code);process.exit(1)})"`;
  const app = `${PRELUDE}
cat > $OUT/dns.py <<'PY'
${PY_DNS}PY
iptables-legacy-save -t nat > $OUT/nat-during; ip route show > $OUT/route-during; cat /etc/resolv.conf > $OUT/resolv-during
check go-name env SSL_CERT_FILE=$CA ${go} https://allowed.test/go
check go-ip env SSL_CERT_FILE=$CA ${go} https://10.1.3.1/go
check go-denied-name env SSL_CERT_FILE=$CA ${go} https://denied.test/
check curl-name ${curl('https://allowed.test/curl')}
check curl-ip ${curl('https://10.1.3.1/curl')}
check curl-denied-name ${curl('https://denied.test/')}
check curl-denied-ip ${curl('https://10.1.2.5/')}
check curl-ip-wrong-port ${curl('https://10.1.3.1:8443/')}
check curl-other-name-port ${curl('https://other.test:8443/other')}
check curl-other-ip-443 ${curl(`https://${NAMES['other.test']}/`)}
check curl-allowed-ip-8443 ${curl(`https://${NAMES['allowed.test']}:8443/`)}
check py-name ${py('https://allowed.test/py')}
check py-ip ${py('https://10.1.3.1/py')}
check py-denied-ip ${py('https://10.1.2.5/')}
check node-name ${node('https://allowed.test/node')}
check node-ip ${node('https://10.1.3.1/node')}
check node-denied-name ${node('https://denied.test/')}
check dns-denied python3 $OUT/dns.py denied.test 127.0.0.1
check dns-allowed-elsewhere python3 $OUT/dns.py allowed.test 192.0.2.53
check dns-getaddrinfo python3 -c "import socket;print(socket.getaddrinfo('allowed.test',443,socket.AF_INET)[0][4][0])"
check boto3-imds env AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null python3 -c "import boto3;print(boto3.Session(region_name='us-east-1').get_credentials().get_frozen_credentials().access_key)"
check udp-other python3 -c "import socket;s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);[s.sendto(b'x',('192.0.2.1',9999)) for _ in range(3)];print('sent')"
check ipv6 curl -sS --max-time 5 -g https://[2001:db8::1]/
# The sink counts datagrams as it reads them: wait (at most 10 s) until all three are in.
for i in $(seq 50); do curl -s http://127.0.0.1:${METRICS_PORT}/metrics | grep -q '^cloister_egress_udp_dropped_total 3' && break; sleep 0.2; done
check metrics curl -sS --max-time 5 http://127.0.0.1:${METRICS_PORT}/metrics
kill -TERM $PPID
`;
  const run = await runTransparentEnclave(t, up, MANIFEST, settings(), app);
  const r = results(run.outDir);
  const ok = (name: string, body: RegExp) => {
    const got = r.get(name);
    assert.ok(got?.ok, `${name}: ${got?.out}\n${run.stdout.slice(-3000)}`);
    assert.match(got.out, body, name);
  };
  const refused = (name: string) => {
    const got = r.get(name);
    assert.ok(got && !got.ok, `${name} should fail: ${got?.out}`);
  };
  // Rules while the app ran: route via lo and the four redirects, made without any binary in the image.
  assert.match(readFileSync(join(run.outDir, 'route-during'), 'utf8'), /^default dev lo .*src 127\.0\.0\.1/m);
  const nat = readFileSync(join(run.outDir, 'nat-during'), 'utf8');
  assert.match(nat, /-A OUTPUT ! -d 127\.0\.0\.0\/8 -p udp -m udp --dport 53 -j REDIRECT --to-ports 53/);
  assert.match(nat, /-A OUTPUT ! -d 127\.0\.0\.0\/8 -p tcp -j REDIRECT --to-ports \d+/);
  assert.equal(
    readFileSync(join(run.outDir, 'resolv-during'), 'utf8').split('\n')[0],
    'nameserver 127.0.0.1',
  );

  ok('go-name', /^hello allowed\.test 443 \/go$/);
  ok('go-ip', /^hello 10\.1\.3\.1 443 \/go$/);
  refused('go-denied-name');
  ok('curl-name', /^hello allowed\.test 443 \/curl$/);
  ok('curl-ip', /^hello 10\.1\.3\.1 443 \/curl$/);
  refused('curl-denied-name');
  assert.match(r.get('curl-denied-name')!.out, /resolve/i);
  refused('curl-denied-ip');
  assert.match(r.get('curl-denied-ip')!.out, /reset|connect/i);
  refused('curl-ip-wrong-port');
  ok('curl-other-name-port', /^hello other\.test:8443 8443 \/other$/);
  refused('curl-other-ip-443');
  refused('curl-allowed-ip-8443');
  ok('py-name', /^hello allowed\.test 443 \/py$/);
  ok('py-ip', /^hello 10\.1\.3\.1 443 \/py$/);
  refused('py-denied-ip');
  ok('node-name', /^hello allowed\.test 443 \/node$/);
  ok('node-ip', /^hello 10\.1\.3\.1 443 \/node$/);
  refused('node-denied-name');
  ok('dns-denied', /^5$/); // REFUSED, no address
  ok('dns-allowed-elsewhere', new RegExp(`^0 ${NAMES['allowed.test']!.replaceAll('.', '\\.')}$`));
  ok('dns-getaddrinfo', new RegExp(`^${NAMES['allowed.test']!.replaceAll('.', '\\.')}$`));
  ok('boto3-imds', new RegExp(`^${IMDS_ACCESS_KEY}$`));
  ok('udp-other', /^sent$/);
  refused('ipv6');
  const metrics = r.get('metrics')!.out;
  assert.match(metrics, /cloister_egress_udp_dropped_total 3/);
  assert.match(metrics, /cloister_dns_queries_total\{answer="refused"\} [1-9]/);
  assert.match(metrics, /cloister_egress_decisions_total\{verdict="allow",rule="allowed\.test:443"\} [1-9]/);

  // Decisions are logged naming the rule and the name an address was bound to.
  assert.match(
    run.stdout,
    /egress allowed: 10\.1\.2\.3:443 \(resolved for allowed\.test\): .*rule 'allowed\.test:443'/,
  );
  assert.match(run.stdout, /egress denied: 10\.1\.2\.5:443 is not in the egress policy/);
  assert.match(
    run.stdout,
    /egress denied: 10\.1\.2\.4:443 was resolved for other\.test, whose rules do not allow port 443/,
  );
  assert.match(run.stdout, /dns refused: denied\.test:\d+ is not in the egress policy/);
  // cloister's own loopback traffic is never redirected: the KMS proxy got the instance's credentials from
  // IMDS through the egress proxy (127.0.0.1) as without transparent mode.
  assert.match(run.stdout, /"component":"kms-proxy","source":"imds".*"msg":"AWS credentials loaded"/);
  // The relay answered the stub's questions; IMDS saw the SDK's token dance through the relay.
  assert.ok(up.lines.includes('relay-resolve allowed.test'), up.lines.join('\n'));
  assert.ok(up.lines.includes('imds PUT /latest/api/token'), up.lines.join('\n'));

  // After cloister exits: no route, an empty nat table, resolv.conf as it was.
  // cloister exited (the app's own code, 0, or 143 when cloister's forwarded SIGTERM reached it first).
  assert.match(run.after, /== after: exit (0|143)\n/);
  assert.doesNotMatch(run.after, /default dev lo/);
  assert.doesNotMatch(run.after, /REDIRECT/);
  assert.match(run.after, /== resolv.conf\nnameserver 192\.0\.2\.99\n/);
});

test('transparent egress with resolver: doh asks the DoH server through the egress path, not the relay; a read-only resolv.conf gets a RAM copy mounted over it', async (t) => {
  requireTool(
    'iptables-legacy-save',
    ['--version'],
    'iptables-legacy (Debian package iptables) to inspect the rules',
  );
  const up = await startUpstreams(t);
  const ramDir = join(tempDir(t, 'cloister-ram-'), 'ram');
  const app = `${PRELUDE}
cat /etc/resolv.conf > $OUT/resolv-during
check curl-name curl -sS --max-time 5 --cacert $CA https://allowed.test/doh
check curl-denied-name curl -sS --max-time 5 --cacert $CA https://denied.test/
kill -TERM $PPID
`;
  const run = await runTransparentEnclave(
    t,
    up,
    MANIFEST,
    `${settings(`  resolver: doh\n  doh_url: https://doh.test/dns-query\n  doh_ca_file: ${up.caFile}\n`)}ram_dir:\n  path: ${ramDir}\n`,
    app,
    { readOnlyResolvConf: true },
  );
  const r = results(run.outDir);
  assert.ok(r.get('curl-name')?.ok, `${r.get('curl-name')?.out}\n${run.stdout.slice(-3000)}`);
  assert.equal(r.get('curl-name')!.out, 'hello allowed.test 443 /doh');
  assert.ok(!r.get('curl-denied-name')?.ok);
  assert.ok(up.lines.includes('doh-query allowed.test'), up.lines.join('\n'));
  assert.ok(!up.lines.some((l) => l.startsWith('relay-resolve')), up.lines.join('\n'));
  assert.ok(!up.lines.includes('doh-query denied.test'), 'a denied name never leaves the enclave');
  // The image's read-only file was never written: cloister's RAM copy was mounted over it, then unmounted.
  assert.equal(
    readFileSync(join(run.outDir, 'resolv-during'), 'utf8').split('\n')[0],
    'nameserver 127.0.0.1',
  );
  assert.equal(readFileSync(run.resolvConf, 'utf8'), 'nameserver 192.0.2.99\n');
  assert.match(run.after, /== resolv.conf\nnameserver 192\.0\.2\.99\n/);
});

test('transparent egress with check_sni: a connection to a name-bound address that names another host in its SNI is refused', async (t) => {
  requireTool(
    'iptables-legacy-save',
    ['--version'],
    'iptables-legacy (Debian package iptables) to inspect the rules',
  );
  const up = await startUpstreams(t);
  // -k: without the check the TLS handshake to the real server would succeed whatever the SNI says.
  const app = `${PRELUDE}
check sni-match curl -sS --max-time 5 --cacert $CA https://allowed.test/sni
check sni-other curl -sSk --max-time 5 --resolve sneaky.test:443:${NAMES['allowed.test']} https://sneaky.test/
check ip-rule-unchecked curl -sSk --max-time 5 --resolve sneaky.test:443:10.1.3.1 https://sneaky.test/ip
kill -TERM $PPID
`;
  const run = await runTransparentEnclave(t, up, MANIFEST, settings('  check_sni: true\n'), app);
  const r = results(run.outDir);
  assert.equal(r.get('sni-match')?.out, 'hello allowed.test 443 /sni', run.stdout.slice(-3000));
  assert.equal(r.get('sni-other')?.ok, false, r.get('sni-other')?.out);
  // An IP rule allows by the address alone: there is no name to hold the SNI to.
  assert.equal(r.get('ip-rule-unchecked')?.out, 'hello sneaky.test 443 /ip');
  assert.match(
    run.stdout,
    /egress denied: 10\.1\.2\.3:443 \(resolved for allowed\.test\) names 'sneaky\.test' in its TLS SNI or HTTP Host/,
  );
});
