// Where miners put their code: an object store addressed by content. The key is
// derived from the code's sha256, so the same code always lands at the same key
// and a validator can check what it fetched against the hash on chain.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { writeAtomic } from '../util/atomic';

export interface ObjectInfo {
  size: number;
  sha256?: string; // from the object's metadata, when the store keeps it
}

export interface ObjectStore {
  /** Human description for messages: never holds credentials. */
  readonly description: string;
  put(key: string, body: Uint8Array, sha256: string): Promise<void>;
  head(key: string): Promise<ObjectInfo | null>;
  get(key: string): Promise<Uint8Array>;
}

export function sha256Hex(b: Uint8Array): string {
  return crypto.createHash('sha256').update(b).digest('hex');
}

/** The content address of a submission. */
export function codeKey(sha256: string): string {
  if (!/^[0-9a-f]{64}$/.test(sha256)) throw new Error(`bad sha256 ${sha256}`);
  return `tournament/train/${sha256}.cpp`;
}

export interface UploadResult {
  key: string;
  sha256: string;
  size: number;
  /** false when the store already held these exact bytes. */
  uploaded: boolean;
}

/** Uploads code under its content address (skips when present) and checks it landed. */
export async function uploadCode(store: ObjectStore, body: Uint8Array): Promise<UploadResult> {
  const sha256 = sha256Hex(body);
  const key = codeKey(sha256);
  const before = await store.head(key);
  const same = (i: ObjectInfo | null) => i !== null && i.size === body.length && (i.sha256 === undefined || i.sha256 === sha256);
  if (same(before)) return { key, sha256, size: body.length, uploaded: false };
  await store.put(key, body, sha256);
  const after = await store.head(key);
  if (!same(after)) {
    throw new UserError(`upload to ${store.description} did not stick: ${key} is ${after ? `${after.size} bytes` : 'missing'} after writing ${body.length}`);
  }
  return { key, sha256, size: body.length, uploaded: true };
}

/** Fetches code and checks it against the sha256 it was committed with. */
export async function downloadCode(store: ObjectStore, key: string, sha256: string, maxBytes?: number): Promise<Uint8Array> {
  const body = await store.get(key);
  if (maxBytes !== undefined && body.length > maxBytes) {
    throw new UserError(`${key} from ${store.description} is ${body.length} bytes, over the ${maxBytes}-byte limit`);
  }
  const got = sha256Hex(body);
  if (got !== sha256) throw new UserError(`${key} from ${store.description} has sha256 ${got}, not the committed ${sha256}`);
  return body;
}

/** A folder standing in for the bucket (--network local): .local_storage/<key>. */
export class LocalStore implements ObjectStore {
  readonly description: string;
  constructor(readonly root: string) {
    this.description = `local storage ${root}`;
  }
  private file(key: string): string {
    const p = path.resolve(this.root, key);
    if (!p.startsWith(path.resolve(this.root) + path.sep)) throw new UserError(`object key ${JSON.stringify(key)} escapes ${this.root}`);
    return p;
  }
  async put(key: string, body: Uint8Array, _sha256?: string): Promise<void> {
    writeAtomic(this.file(key), [Buffer.from(body)]);
  }
  async head(key: string): Promise<ObjectInfo | null> {
    try {
      const st = fs.statSync(this.file(key));
      return st.isFile() ? { size: st.size } : null;
    } catch {
      return null;
    }
  }
  async get(key: string): Promise<Uint8Array> {
    try {
      return fs.readFileSync(this.file(key));
    } catch (e) {
      throw new UserError(`${key} is not in ${this.description} (${(e as NodeJS.ErrnoException).code ?? e})`);
    }
  }
}
