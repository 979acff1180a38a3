// Where the miner's code goes: the local folder on --network local, the
// miner's R2 bucket otherwise, and how a commitment tells validators where it is.
import * as path from 'path';
import { LOCAL_STORAGE_DIR, NetworkSpec } from '../chain/network';
import type { CodeLocation } from '../chain/payload';
import { LocalStore, ObjectStore } from '../storage/store';
import { loadEnv, Env } from '../util/env';

export interface StorageTarget {
  store: ObjectStore;
  /** where validators fetch a key from, as committed */
  location(key: string): CodeLocation;
  close(): void;
}

/**
 * The store for the network. The R2 settings (environment over ./.env) are
 * checked here, so a missing setting stops a command before anything is
 * uploaded or sent; read access is checked when a commitment is prepared.
 */
export async function storageFor(network: NetworkSpec, env: Env = loadEnv()): Promise<StorageTarget> {
  if (network.kind === 'local') {
    const store = new LocalStore(path.join(process.cwd(), LOCAL_STORAGE_DIR));
    return { store, location: (key) => ({ kind: 'local', key }), close: () => undefined };
  }
  // @aws-sdk loads only when a bucket is used.
  const { r2ConfigFromEnv, r2Location, R2Store } = await import('../storage/r2');
  const cfg = r2ConfigFromEnv(env);
  const store = R2Store.forUpload(cfg);
  return { store, location: (key) => r2Location(cfg, key), close: () => store.destroy() };
}

export function describeLocation(loc: CodeLocation): string {
  switch (loc.kind) {
    case 'local':
      return `${LOCAL_STORAGE_DIR}/${loc.key}`;
    case 'url':
      return loc.url;
    case 'r2':
      return `r2://${loc.bucket}/${loc.key} (account ${loc.account_id}${loc.jurisdiction ? `, jurisdiction ${loc.jurisdiction}` : ''}, read-only token)`;
  }
}
