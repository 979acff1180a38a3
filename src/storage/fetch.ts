// The validator's side of a commitment's location: fetch the committed code and
// check it against the committed sha256 and the size limit.
import * as path from 'path';
import { UserError } from '../errors';
import type { CodeLocation, CommitmentPayload } from '../chain/payload';
import { LOCAL_STORAGE_DIR } from '../chain/network';
import { LocalStore, ObjectStore, ObjectInfo, downloadCode } from './store';

/** A public URL as a read-only store of one object. */
class HttpStore implements ObjectStore {
  readonly description: string;
  constructor(private readonly url: string, private readonly timeoutMs = 60000) {
    this.description = url;
  }
  async put(): Promise<void> {
    throw new Error('HttpStore is read-only');
  }
  async head(): Promise<ObjectInfo | null> {
    return null;
  }
  async get(): Promise<Uint8Array> {
    let res: Response;
    try {
      res = await fetch(this.url, { signal: AbortSignal.timeout(this.timeoutMs), redirect: 'follow' });
    } catch (e) {
      throw new UserError(`cannot fetch ${this.url}: ${(e as Error).message}`);
    }
    if (!res.ok) throw new UserError(`cannot fetch ${this.url}: HTTP ${res.status}`);
    return new Uint8Array(await res.arrayBuffer());
  }
}

export interface FetchOptions {
  /** where .local_storage/ is, for local commitments */
  cwd?: string;
  /** an S3-compatible endpoint instead of R2's (tests) */
  r2Endpoint?: string;
  maxBytes?: number;
}

async function storeFor(loc: CodeLocation, opts: FetchOptions): Promise<{ store: ObjectStore; key: string; close(): void }> {
  switch (loc.kind) {
    case 'local':
      return { store: new LocalStore(path.join(opts.cwd ?? process.cwd(), LOCAL_STORAGE_DIR)), key: loc.key, close: () => undefined };
    case 'url':
      if (!/^https?:\/\//.test(loc.url)) throw new UserError(`committed URL ${JSON.stringify(loc.url)} is not http(s)`);
      return { store: new HttpStore(loc.url), key: '', close: () => undefined };
    case 'r2': {
      if (!loc.access_key_id || !loc.secret_access_key) throw new UserError(`commitment for r2://${loc.bucket}/${loc.key} carries no read token`);
      const { R2Store } = await import('./r2');
      const store = new R2Store({
        bucket: loc.bucket,
        accountId: loc.account_id,
        accessKeyId: loc.access_key_id,
        secretAccessKey: loc.secret_access_key,
        jurisdiction: loc.jurisdiction,
        endpoint: opts.r2Endpoint,
      });
      return { store, key: loc.key, close: () => store.destroy() };
    }
  }
}

/** Downloads what a commitment points at and checks its size and sha256. */
export async function fetchCommitted(payload: CommitmentPayload, opts: FetchOptions = {}): Promise<Uint8Array> {
  const { store, key, close } = await storeFor(payload.loc, opts);
  try {
    const body = await downloadCode(store, key, payload.sha256, opts.maxBytes);
    if (body.length !== payload.size) throw new UserError(`${store.description}: ${body.length} bytes, committed ${payload.size}`);
    return body;
  } finally {
    close();
  }
}
