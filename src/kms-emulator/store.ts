// The emulator's keys, persisted under <state-dir>: keys/<uuid>.json (metadata, policy, key material) and
// aliases.json. Every write is atomic (temp file + rename), so a crash leaves the old or the new file,
// never half of one. A file that does not parse is an error at startup: an empty key store in its place
// would silently make every existing ciphertext undecryptable.
import { randomBytes, randomUUID } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readdirSync,
  readFileSync,
  renameSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { StoreError } from '../errors.ts';

export interface KeyRecord {
  keyId: string;
  arn: string;
  creationDate: number;
  description: string;
  policy: string;
  /** 32-byte AES-256-GCM key, base64. */
  material: string;
}

export interface AliasRecord {
  aliasName: string;
  targetKeyId: string;
  creationDate: number;
}

export { StoreError };

function atomicWrite(path: string, data: string): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, data, { mode: 0o600 });
  const fd = openSync(tmp, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function readJson(path: string): unknown {
  const text = readFileSync(path, 'utf8');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new StoreError(`${path}: corrupt state file (${err instanceof Error ? err.message : String(err)})`);
  }
}

function checkKey(path: string, v: unknown): KeyRecord {
  const r = v as Partial<KeyRecord> | null;
  const ok =
    r &&
    typeof r.keyId === 'string' &&
    typeof r.arn === 'string' &&
    typeof r.creationDate === 'number' &&
    typeof r.description === 'string' &&
    typeof r.policy === 'string' &&
    typeof r.material === 'string' &&
    Buffer.from(r.material, 'base64').length === 32;
  if (!ok) throw new StoreError(`${path}: corrupt key file (missing or malformed fields)`);
  return r as KeyRecord;
}

export class KeyStore {
  readonly keys = new Map<string, KeyRecord>();
  readonly aliases = new Map<string, AliasRecord>();
  private readonly keysDir: string;
  private readonly aliasFile: string;

  constructor(
    readonly dir: string,
    readonly region: string,
    readonly accountId: string,
  ) {
    this.keysDir = join(dir, 'keys');
    this.aliasFile = join(dir, 'aliases.json');
    mkdirSync(this.keysDir, { recursive: true, mode: 0o700 });
    for (const name of readdirSync(this.keysDir)) {
      if (!name.endsWith('.json')) continue; // leftovers of an interrupted write end in .tmp
      const path = join(this.keysDir, name);
      const rec = checkKey(path, readJson(path));
      this.keys.set(rec.keyId, rec);
    }
    if (existsSync(this.aliasFile)) {
      const list = readJson(this.aliasFile);
      if (!Array.isArray(list)) throw new StoreError(`${this.aliasFile}: corrupt alias file (not a list)`);
      for (const a of list as AliasRecord[]) {
        if (typeof a?.aliasName !== 'string' || typeof a.targetKeyId !== 'string') {
          throw new StoreError(`${this.aliasFile}: corrupt alias entry`);
        }
        this.aliases.set(a.aliasName, a);
      }
    }
  }

  keyArn(keyId: string): string {
    return `arn:aws:kms:${this.region}:${this.accountId}:key/${keyId}`;
  }

  aliasArn(name: string): string {
    return `arn:aws:kms:${this.region}:${this.accountId}:${name}`;
  }

  createKey(description: string, policy: string): KeyRecord {
    const keyId = randomUUID();
    const rec: KeyRecord = {
      keyId,
      arn: this.keyArn(keyId),
      creationDate: Math.floor(Date.now() / 1000),
      description,
      policy,
      material: randomBytes(32).toString('base64'),
    };
    this.saveKey(rec);
    this.keys.set(keyId, rec);
    return rec;
  }

  saveKey(rec: KeyRecord): void {
    atomicWrite(join(this.keysDir, `${rec.keyId}.json`), `${JSON.stringify(rec, null, 2)}\n`);
  }

  putAlias(alias: AliasRecord): void {
    const next = new Map(this.aliases).set(alias.aliasName, alias);
    atomicWrite(this.aliasFile, `${JSON.stringify([...next.values()], null, 2)}\n`);
    this.aliases.set(alias.aliasName, alias);
  }
}
