// A software NSM for dev mode and tests. It answers the same raw CBOR protocol as /dev/nsm (so the
// client and codec are exercised end to end) and signs real COSE_Sign1 attestation documents under
// its own P-384 chain, shaped like AWS's: root -> regional -> zonal -> instance -> 3 h leaf.
// The root key and certificate live in a state directory so the same root is trusted across
// restarts; the intermediates and leaf are issued in memory and rotated before they run out.
import { createHash, KeyObject, randomBytes, randomUUID, sign, type webcrypto } from 'node:crypto';
import {
  closeSync,
  fsyncSync,
  linkSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import * as pkijs from 'pkijs';
import { ATTESTATION_FIELD_MAX, GET_RANDOM_BYTES, MAX_PCRS } from '../constants.ts';
import { derToPem, pemToDer } from '../encoding/pem.ts';
import { exportPkcs8, generateP384, importPkcs8, issueCertificate, KU } from './ca.ts';
import { createNsmClient } from './client.ts';
import { cborEncode, decodeRequest, encodeResponse, type NsmRequest, type NsmResponse } from './codec.ts';
import { type Nsm, NsmError } from './types.ts';

/** PCRs 0..15 are locked from the start, as in a real enclave. */
export const INITIALLY_LOCKED = 16;
const PCR_BYTES = 48;

const HOUR = 3600_000;
const DAY = 24 * HOUR;
/** Lifetimes as observed in AWS's chain (docs/reference/nitro.md, "Certificate chain"). */
const LIFETIMES = { root: 30 * 365 * DAY, regional: 20 * DAY, zonal: 5 * DAY, instance: DAY, leaf: 3 * HOUR };

/** COSE protected header {1: -35} (alg ES384), exactly as the NSM sends it. */
const PROTECTED = Buffer.from('a1013822', 'hex');

export interface SoftwareNsmOptions {
  /** Directory holding root.pem and root-key.pem (null: an ephemeral root for this process only). */
  stateDir: string | null;
  /** PCR index -> hex value (48 bytes). Unlisted PCRs are zero, i.e. a debug-mode enclave. */
  pcrs?: Record<string, string>;
  moduleId?: string;
  /** Issue a new leaf once the current one is this old (default 30 min; it is valid for 3 h). */
  leafRotateMs?: number;
  /** Clock in ms, for tests. */
  now?: () => number;
}

interface Level {
  der: Buffer;
  cert: pkijs.Certificate;
  key: webcrypto.CryptoKey;
  notBefore: number;
  notAfter: number;
}

interface Root {
  der: Buffer;
  key: webcrypto.CryptoKey;
  pem: string;
}

/** Write `data` to `path` atomically (temp file in the same directory, fsync, rename). */
function writeAtomic(path: string, data: string | Uint8Array, mode = 0o644): void {
  const tmp = `${path}.${process.pid}.${randomUUID()}.tmp`;
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeFileSync(fd, data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

async function newRoot(now: number): Promise<Root> {
  const keys = await generateP384();
  const { der } = await issueCertificate({
    subject: [
      ['C', 'US'],
      ['O', 'cloister'],
      ['OU', 'software-nsm'],
      ['CN', 'software.nitro-enclaves'],
    ],
    publicKey: keys.publicKey,
    signingKey: keys.privateKey,
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + LIFETIMES.root),
    ca: true,
    keyUsage: [KU.digitalSignature, KU.keyCertSign, KU.cRLSign],
  });
  return { der, key: keys.privateKey, pem: derToPem(der, 'CERTIFICATE') };
}

/**
 * Load the software NSM's root from `stateDir`, creating it on first use. `root-key.pem` holds the
 * private key and the certificate together, created with link() so two processes starting at once
 * agree on one root; `root.pem` is the certificate alone, for export.
 */
export async function loadOrCreateRoot(stateDir: string, now = Date.now()): Promise<Root> {
  mkdirSync(stateDir, { recursive: true, mode: 0o700 });
  const keyPath = join(stateDir, 'root-key.pem');
  const certPath = join(stateDir, 'root.pem');
  let text: string;
  try {
    text = readFileSync(keyPath, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    const root = await newRoot(now);
    const tmp = `${keyPath}.${process.pid}.${randomUUID()}.tmp`;
    const fd = openSync(tmp, 'wx', 0o600);
    try {
      writeFileSync(fd, derToPem(await exportPkcs8(root.key), 'PRIVATE KEY') + root.pem);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    try {
      linkSync(tmp, keyPath);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      unlinkSync(tmp);
    }
    text = readFileSync(keyPath, 'utf8');
  }
  let der: Buffer;
  let key: webcrypto.CryptoKey;
  try {
    der = pemToDer(text, 'CERTIFICATE');
    key = await importPkcs8(pemToDer(text, 'PRIVATE KEY'));
  } catch (err) {
    throw new Error(`${keyPath}: not a software NSM root (${(err as Error).message})`);
  }
  const pem = derToPem(der, 'CERTIFICATE');
  let current: string | null = null;
  try {
    current = readFileSync(certPath, 'utf8');
  } catch {}
  if (current !== pem) writeAtomic(certPath, pem);
  return { der, key, pem };
}

function parsePcrs(pcrs: Record<string, string>): Map<number, Buffer> {
  const out = new Map<number, Buffer>();
  for (const [k, v] of Object.entries(pcrs)) {
    const index = Number(k);
    if (!/^\d+$/.test(k) || index >= MAX_PCRS) throw new Error(`nsm.pcrs: ${k} is not a PCR index 0..31`);
    const hex = String(v).replace(/^0x/i, '');
    if (!/^[0-9a-fA-F]*$/.test(hex) || hex.length !== PCR_BYTES * 2) {
      throw new Error(`nsm.pcrs.${k}: expected ${PCR_BYTES * 2} hex digits (${PCR_BYTES} bytes)`);
    }
    out.set(index, Buffer.from(hex, 'hex'));
  }
  return out;
}

/** Shaped like AWS's: the parent's instance id (17 hex digits), "-enc", a 16-digit enclave id. */
function randomModuleId(): string {
  return `i-${randomBytes(9).toString('hex').slice(1)}-enc${randomBytes(8).toString('hex')}`;
}

export class SoftwareNsm {
  readonly rootPem: string;
  readonly rootDer: Buffer;
  readonly moduleId: string;
  private readonly rootKey: webcrypto.CryptoKey;
  private readonly pcrs: Buffer[];
  private readonly locked: boolean[];
  private readonly now: () => number;
  private readonly leafRotateMs: number;
  private readonly rootCert: pkijs.Certificate;
  /** regional, zonal, instance, leaf */
  private chain: Level[] = [];
  private leafSigner: KeyObject | null = null;
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(root: Root, rootCert: pkijs.Certificate, opts: SoftwareNsmOptions) {
    this.rootPem = root.pem;
    this.rootDer = root.der;
    this.rootKey = root.key;
    this.rootCert = rootCert;
    this.moduleId = opts.moduleId ?? randomModuleId();
    this.now = opts.now ?? Date.now;
    this.leafRotateMs = opts.leafRotateMs ?? 30 * 60_000;
    const configured = parsePcrs(opts.pcrs ?? {});
    this.pcrs = Array.from({ length: MAX_PCRS }, (_, i) => configured.get(i) ?? Buffer.alloc(PCR_BYTES));
    this.locked = Array.from({ length: MAX_PCRS }, (_, i) => i < INITIALLY_LOCKED);
  }

  static async open(opts: SoftwareNsmOptions): Promise<SoftwareNsm> {
    const now = (opts.now ?? Date.now)();
    const root = opts.stateDir ? await loadOrCreateRoot(opts.stateDir, now) : await newRoot(now);
    return new SoftwareNsm(root, pkijs.Certificate.fromBER(new Uint8Array(root.der)), opts);
  }

  /** An Nsm client speaking CBOR to this instance. */
  client(): Nsm {
    return createNsmClient((req) => this.raw(req));
  }

  /** The raw request handler: CBOR in, CBOR out, like the /dev/nsm ioctl. Requests run one at a time. */
  raw(req: Uint8Array): Promise<Uint8Array> {
    const run = this.queue.then(() => this.handle(req));
    this.queue = run.catch(() => {});
    return run;
  }

  private async handle(bytes: Uint8Array): Promise<Uint8Array> {
    let res: NsmResponse;
    try {
      res = await this.dispatch(decodeRequest(bytes));
    } catch (err) {
      res = { type: 'Error', code: err instanceof NsmError ? err.code : 'InternalError' };
    }
    return encodeResponse(res);
  }

  private index(i: number): number {
    if (i >= MAX_PCRS) throw new NsmError('InvalidIndex', `PCR ${i} does not exist`);
    return i;
  }

  private async dispatch(req: NsmRequest): Promise<NsmResponse> {
    switch (req.type) {
      case 'DescribeNSM':
        return {
          type: 'DescribeNSM',
          version_major: 1,
          version_minor: 0,
          version_patch: 0,
          module_id: this.moduleId,
          max_pcrs: MAX_PCRS,
          locked_pcrs: this.lockedIndices(),
          digest: 'SHA384',
        };
      case 'DescribePCR': {
        const i = this.index(req.index);
        return { type: 'DescribePCR', lock: this.locked[i] === true, data: this.pcrs[i]! };
      }
      case 'ExtendPCR': {
        const i = this.index(req.index);
        if (this.locked[i]) throw new NsmError('ReadOnlyIndex', `PCR ${i} is locked`);
        const next = createHash('sha384').update(this.pcrs[i]!).update(req.data).digest();
        this.pcrs[i] = next;
        return { type: 'ExtendPCR', data: next };
      }
      case 'LockPCR': {
        const i = this.index(req.index);
        if (this.locked[i]) throw new NsmError('ReadOnlyIndex', `PCR ${i} is already locked`);
        this.locked[i] = true;
        return { type: 'LockPCR' };
      }
      case 'LockPCRs': {
        if (req.range > MAX_PCRS)
          throw new NsmError('InvalidIndex', `range ${req.range} exceeds ${MAX_PCRS}`);
        for (let i = 0; i < req.range; i++) this.locked[i] = true;
        return { type: 'LockPCRs' };
      }
      case 'GetRandom':
        return { type: 'GetRandom', random: randomBytes(GET_RANDOM_BYTES) };
      case 'Attestation':
        return { type: 'Attestation', document: await this.attest(req) };
    }
  }

  private lockedIndices(): number[] {
    return this.locked.flatMap((l, i) => (l ? [i] : []));
  }

  private async attest(req: Extract<NsmRequest, { type: 'Attestation' }>): Promise<Buffer> {
    for (const key of ['user_data', 'nonce', 'public_key'] as const) {
      const v = req[key];
      if (v && v.length > ATTESTATION_FIELD_MAX) {
        throw new NsmError('InputTooLarge', `${key} is ${v.length} bytes (at most ${ATTESTATION_FIELD_MAX})`);
      }
    }
    const now = this.now();
    await this.ensureChain(now);
    const leaf = this.chain[3]!;
    const pcrs = new Map<number, Buffer>();
    for (const i of this.lockedIndices()) pcrs.set(i, this.pcrs[i]!);
    // Key order and nulls exactly as the NSM emits them.
    const payload = cborEncode({
      module_id: this.moduleId,
      digest: 'SHA384',
      timestamp: BigInt(now),
      pcrs,
      certificate: leaf.der,
      cabundle: [this.rootDer, this.chain[0]!.der, this.chain[1]!.der, this.chain[2]!.der],
      public_key: req.public_key,
      user_data: req.user_data,
      nonce: req.nonce,
    });
    const toSign = cborEncode(['Signature1', PROTECTED, Buffer.alloc(0), payload]);
    const signature = sign('sha384', toSign, { key: this.leafSigner!, dsaEncoding: 'ieee-p1363' });
    return cborEncode([PROTECTED, {}, payload, signature]);
  }

  /** Reissue any certificate that could not cover its child's full lifetime, and an old leaf. */
  private async ensureChain(now: number): Promise<void> {
    const levels: Array<{ name: keyof typeof LIFETIMES; cn: string; pathLen?: number }> = [
      { name: 'regional', cn: 'regional.software.nitro-enclaves', pathLen: 2 },
      { name: 'zonal', cn: 'zonal.regional.software.nitro-enclaves', pathLen: 1 },
      { name: 'instance', cn: `${this.moduleId.split('-enc')[0]}.software.nitro-enclaves`, pathLen: 0 },
      { name: 'leaf', cn: `${this.moduleId}.software.nitro-enclaves` },
    ];
    const childLife = [LIFETIMES.zonal, LIFETIMES.instance, LIFETIMES.leaf, 0];
    let parentChanged = false;
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i]!;
      const cur = this.chain[i];
      const stale =
        !cur ||
        parentChanged ||
        now < cur.notBefore ||
        (level.name === 'leaf'
          ? now - cur.notBefore >= this.leafRotateMs || now >= cur.notAfter
          : cur.notAfter - now < childLife[i]! + HOUR);
      if (!stale) continue;
      const parent = i === 0 ? { cert: this.rootCert, key: this.rootKey } : this.chain[i - 1]!;
      const keys = await generateP384();
      const isLeaf = level.name === 'leaf';
      // Intermediates start a little in the past (clock skew); the leaf starts now, as AWS's do.
      const notBefore = Math.floor((isLeaf ? now : now - 5 * 60_000) / 1000) * 1000;
      const issued = await issueCertificate({
        subject: [
          ['C', 'US'],
          ['O', 'cloister'],
          ['OU', 'software-nsm'],
          ['CN', level.cn],
        ],
        publicKey: keys.publicKey,
        issuer: parent.cert,
        signingKey: parent.key,
        notBefore: new Date(notBefore),
        notAfter: new Date(notBefore + LIFETIMES[level.name]),
        ca: !isLeaf,
        pathLen: level.pathLen,
        keyUsage: isLeaf
          ? [KU.digitalSignature, KU.nonRepudiation]
          : i === 2
            ? [KU.keyCertSign]
            : [KU.digitalSignature, KU.keyCertSign, KU.cRLSign],
      });
      const cert = issued.cert;
      this.chain[i] = {
        der: issued.der,
        cert,
        key: keys.privateKey,
        notBefore: cert.notBefore.value.getTime(),
        notAfter: cert.notAfter.value.getTime(),
      };
      if (isLeaf) this.leafSigner = KeyObject.from(keys.privateKey);
      parentChanged = true;
    }
  }
}

/** Open a software NSM and return its client (what openNsm gives the supervisor). */
export async function openSoftwareNsm(opts: SoftwareNsmOptions): Promise<Nsm & { rootPem: string }> {
  const sw = await SoftwareNsm.open(opts);
  return Object.assign(sw.client(), { rootPem: sw.rootPem });
}
