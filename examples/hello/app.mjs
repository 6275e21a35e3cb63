// The demo app. It runs inside the (emulated) enclave, unmodified by cloister: it only reads the
// environment cloister gives it (HTTP_PROXY, AWS_KMS_ENDPOINT) and the ports in enclaver.yaml.
// Every step checks its result; any failure exits non-zero.
//
// Extra environment from examples/hello/demo.mjs / `cloister dev`: DEMO_ORIGIN (a web server on the
// host side), CLOISTER_CLI (to run `cloister attest verify`), CLOISTER_DEV_NSM_ROOT (the software NSM's
// root certificate), CLOISTER_DEV_KMS_URL (the KMS emulator, reached through the egress proxy).
import { execFileSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { createServer, request as httpRequest } from 'node:http';
import { CreateKeyCommand, DecryptCommand, EncryptCommand, KMSClient } from '@aws-sdk/client-kms';
import { HttpResponse } from '@smithy/protocol-http';

const say = (s) => console.log(s);
const fail = (s) => {
  console.log(`FAILED: ${s}`);
  process.exit(1);
};
const need = (name) =>
  process.env[name] ?? fail(`${name} is not set (run this through examples/hello/demo.mjs)`);

const proxy = new URL(need('HTTP_PROXY'));
const origin = need('DEMO_ORIGIN');

/** GET an http:// URL through the egress proxy (absolute-form request, as curl -x does). */
function getViaProxy(url) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = httpRequest(
      { host: proxy.hostname, port: proxy.port, path: url, headers: { host: u.host } },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** An AWS SDK request handler that sends plain-HTTP requests through the egress proxy. */
const viaProxy = {
  handle(request) {
    return new Promise((resolve, reject) => {
      const target = `http://${request.hostname}${request.port ? `:${request.port}` : ''}${request.path}`;
      const req = httpRequest(
        {
          host: proxy.hostname,
          port: proxy.port,
          method: request.method,
          path: target,
          headers: request.headers,
        },
        (res) => {
          const headers = {};
          for (const [k, v] of Object.entries(res.headers)) headers[k] = Array.isArray(v) ? v.join(', ') : v;
          resolve({ response: new HttpResponse({ statusCode: res.statusCode, headers, body: res }) });
        },
      );
      req.on('error', reject);
      req.end(request.body);
    });
  },
};

// --- 1. Egress ---------------------------------------------------------------------------------------
say(
  '1. The enclave has no network of its own. Its only way out is the egress proxy, which follows enclaver.yaml.',
);
const allowed = await getViaProxy(`${origin}/weather`);
if (allowed.status !== 200) fail(`allowed fetch answered ${allowed.status}: ${allowed.body}`);
say(`   GET ${origin}/weather (allowed)            -> ${allowed.status}: ${allowed.body.trim()}`);
const denied = await getViaProxy('http://169.254.169.254/latest/meta-data/iam/security-credentials/');
if (denied.status !== 403 || !denied.body.includes('169.254.169.254')) {
  fail(`the metadata service should be refused by the deny rule; got ${denied.status}: ${denied.body}`);
}
say(`   GET http://169.254.169.254/... (metadata)  -> ${denied.status}: ${denied.body.trim()}`);

// --- 2. Attestation ----------------------------------------------------------------------------------
say('2. The enclave proves what it is: an attestation document signed by the (software) NSM.');
const apiPort = 9001;
const nonce = randomBytes(16);
const attRes = await fetch(`http://127.0.0.1:${apiPort}/v1/attestation`, {
  method: 'POST',
  body: JSON.stringify({ nonce: nonce.toString('base64') }),
});
if (attRes.status !== 200) fail(`attestation API answered ${attRes.status}: ${await attRes.text()}`);
const doc = Buffer.from(await attRes.arrayBuffer());
let verified;
try {
  const out = execFileSync(
    process.execPath,
    [
      need('CLOISTER_CLI'),
      'attest',
      'verify',
      '--root',
      need('CLOISTER_DEV_NSM_ROOT'),
      '--nonce',
      nonce.toString('hex'),
      '-',
    ],
    { input: doc, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] },
  );
  verified = JSON.parse(out);
} catch (err) {
  fail(`attestation document did not verify: ${err.stdout || err.stderr || err.message}`);
}
const pcr0 = verified.pcrs?.['0'];
if (!verified.valid || !/^[0-9a-f]{96}$/.test(pcr0 ?? '')) fail('verified document has no PCR0');
say(`   got a ${doc.length}-byte document; signature, certificate chain and our nonce check out`);
say(`   PCR0 (this enclave's measurement) = ${pcr0.slice(0, 24)}...`);

// --- 3. KMS ------------------------------------------------------------------------------------------
say(
  '3. A secret only this enclave can open: a KMS key whose policy lets PCR0 = ours decrypt, and nobody else.',
);
const kmsUrl = need('CLOISTER_DEV_KMS_URL');
const direct = new KMSClient({
  region: 'us-east-1',
  endpoint: kmsUrl,
  requestHandler: viaProxy,
  maxAttempts: 1,
});
// `cloister kms policy --lint` finds no leak in this policy (nobody may change it, and Decrypt needs
// this PCR0); for a real key, print a least-privilege one with `cloister kms policy` (docs/kms.md).
const policy = {
  Version: '2012-10-17',
  Statement: [
    {
      Sid: 'EncryptForAnyone',
      Effect: 'Allow',
      Principal: { AWS: '*' },
      Action: ['kms:Encrypt', 'kms:DescribeKey'],
      Resource: '*',
    },
    {
      Sid: 'DecryptOnlyInThisEnclave',
      Effect: 'Allow',
      Principal: { AWS: '*' },
      Action: 'kms:Decrypt',
      Resource: '*',
      Condition: { StringEqualsIgnoreCase: { 'kms:RecipientAttestation:PCR0': pcr0 } },
    },
  ],
};
const key = (await direct.send(new CreateKeyCommand({ Policy: JSON.stringify(policy), Description: 'demo' })))
  .KeyMetadata;
const secret = 'the launch code is 0000';
const sealed = await direct.send(new EncryptCommand({ KeyId: key.KeyId, Plaintext: Buffer.from(secret) }));
say(`   created key ${key.KeyId}; encrypted a secret (${sealed.CiphertextBlob.length} bytes of ciphertext)`);

try {
  await direct.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob }));
  fail('a Decrypt without attestation succeeded');
} catch (err) {
  if (err.name !== 'AccessDeniedException')
    fail(`expected AccessDeniedException, got ${err.name}: ${err.message}`);
  say(`   Decrypt sent straight to KMS, without attestation -> refused (${err.name})`);
}

// The same SDK, pointed at cloister's KMS proxy: it attaches this enclave's attestation document.
const viaEnclave = new KMSClient({
  region: 'us-east-1',
  endpoint: need('AWS_KMS_ENDPOINT'),
  credentials: { accessKeyId: 'unused', secretAccessKey: 'the-proxy-signs-with-its-own' },
  maxAttempts: 1,
});
const opened = await viaEnclave.send(new DecryptCommand({ CiphertextBlob: sealed.CiphertextBlob }));
const plain = Buffer.from(opened.Plaintext).toString();
if (plain !== secret) fail('the decrypted secret does not match');
say(`   Decrypt through the KMS proxy (${need('AWS_KMS_ENDPOINT')}), attested -> "${plain}"`);

// --- 4. Boot-time secrets ----------------------------------------------------------------------------
// (Only when demo.mjs set them up: `cloister secrets encrypt --dev`, bound to this enclave's PCR0.)
const passwordSha = process.env.DEMO_PASSWORD_SHA256;
if (passwordSha) {
  say('4. Boot-time secrets: cloister decrypted them (attested, bound to PCR0) before starting this app.');
  const sha = (b) => createHash('sha256').update(b).digest('hex');
  const fromEnv = need('DEMO_PASSWORD');
  const file = `${need('CLOISTER_RAM_DIR')}/demo/password`;
  const st = statSync(file);
  if (sha(fromEnv) !== passwordSha) fail('DEMO_PASSWORD is not the password demo.mjs encrypted');
  if (sha(readFileSync(file)) !== passwordSha) fail(`${file} does not hold the password`);
  if ((st.mode & 0o777) !== 0o400) fail(`${file} has mode ${(st.mode & 0o777).toString(8)}, not 400`);
  // Never print a secret: its digest says it arrived.
  say(
    `   password: in DEMO_PASSWORD and in ${file} (mode 0400, a RAM file system), sha256 ${passwordSha.slice(0, 12)}...`,
  );
  say('   TLS key of ingress port 8443: decrypted into cloister, which terminates TLS with it');
}

// --- 5. Ingress --------------------------------------------------------------------------------------
say(
  `${passwordSha ? 5 : 4}. Clients reach the app through ingress: the host forwards a port, cloister hands it to 127.0.0.1.`,
);
// Port 8080 (plain) and, with boot-time secrets, 8443 (cloister terminates TLS with the decrypted key).
const ports = passwordSha ? [8080, 8443] : [8080];
let waiting = ports.length;
const served = new Promise((resolve) => {
  for (const port of ports) {
    const server = createServer((req, res) => {
      res.end(`hello from inside the enclave, PCR0 ${pcr0.slice(0, 16)}...\n`);
      say(`   served ${req.method} ${req.url} on port ${port} to a client outside the enclave`);
      server.close();
      if (--waiting === 0) resolve();
    }).listen(port, '127.0.0.1', () => {
      if (port === ports.at(-1)) say(`   ingress ready: listening on 127.0.0.1:${ports.join(' and ')}`);
    });
  }
});
const timeout = setTimeout(() => fail('nobody called the ingress endpoint within 30 s'), 30_000);
await served;
clearTimeout(timeout);
say(
  `Done: egress filtered, attestation verified, secret sealed to this enclave${passwordSha ? ', boot-time secrets delivered' : ''}, ingress served. Exiting 0.`,
);
process.exit(0);
