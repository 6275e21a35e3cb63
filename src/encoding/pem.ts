// PEM <-> DER (RFC 7468), for certificates, keys and the software NSM's root; strict about base64.

const PEM_RE = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/** All PEM blocks in `text` with the given label (e.g. CERTIFICATE, PUBLIC KEY). */
export function pemBlocks(text: string, label: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of text.matchAll(PEM_RE)) {
    if (m[1] !== label) continue;
    const body = (m[2] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(body) || body.length % 4 !== 0) {
      throw new Error(`invalid base64 in PEM ${label} block`);
    }
    out.push(Buffer.from(body, 'base64'));
  }
  return out;
}

/** The single PEM block with `label`; throws if there is none. */
export function pemToDer(text: string, label: string): Buffer {
  const [first] = pemBlocks(text, label);
  if (!first) throw new Error(`no PEM ${label} block found`);
  return first;
}

export function derToPem(der: Uint8Array, label: string): string {
  const b64 = Buffer.from(der).toString('base64');
  const lines = b64.match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}
