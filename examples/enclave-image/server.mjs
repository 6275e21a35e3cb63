// A minimal enclave app with no dependencies: GET /attestation?nonce=HEX on port 8080 answers with an
// attestation document (CBOR, COSE_Sign1) that binds the caller's nonce, fetched from cloister's
// attestation API inside the enclave. Check it on the client with:
//   curl -s "http://<instance>:8080/attestation?nonce=$(openssl rand -hex 16)" -o doc.cbor
//   cloister attest verify --nonce <the same hex> --pcr 0=<PCR0 from nitro-cli build-enclave> doc.cbor
import { createServer } from 'node:http';

const API = 'http://127.0.0.1:9001/v1/attestation';

createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://enclave');
  if (url.pathname !== '/attestation') {
    res.writeHead(404).end('try GET /attestation?nonce=HEX\n');
    return;
  }
  const nonce = url.searchParams.get('nonce') ?? '';
  if (!/^([0-9a-f]{2}){1,64}$/i.test(nonce)) {
    res.writeHead(400).end('nonce: 1 to 64 bytes of hex\n');
    return;
  }
  try {
    const att = await fetch(`${API}?nonce=${nonce}`);
    const body = Buffer.from(await att.arrayBuffer());
    res
      .writeHead(att.status, { 'content-type': att.headers.get('content-type') ?? 'application/cbor' })
      .end(body);
  } catch (err) {
    res.writeHead(502).end(`attestation API: ${err.message}\n`);
  }
}).listen(8080, '127.0.0.1', () => console.log('attest-server listening on 127.0.0.1:8080'));
