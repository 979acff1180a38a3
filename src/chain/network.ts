// --network: finney, test, local, or a ws(s):// URL of a subtensor node.
import * as path from 'path';
import { UserError } from '../errors';
import type { MinerChain } from './types';

const NETWORK_ENDPOINTS: Record<string, string> = {
  finney: 'wss://entrypoint-finney.opentensor.ai:443',
  test: 'wss://test.finney.opentensor.ai:443',
};

export type NetworkSpec = { kind: 'local'; name: 'local' } | { kind: 'subtensor'; name: string; url: string };

export function resolveNetwork(network: string): NetworkSpec {
  if (network === 'local') return { kind: 'local', name: 'local' };
  if (NETWORK_ENDPOINTS[network]) return { kind: 'subtensor', name: network, url: NETWORK_ENDPOINTS[network] };
  if (/^wss?:\/\/[^\s/]+/.test(network)) return { kind: 'subtensor', name: network, url: network };
  throw new UserError(`unknown network ${JSON.stringify(network)}`, {
    hint: `use ${[...Object.keys(NETWORK_ENDPOINTS), 'local'].join(', ')} or a ws:// / wss:// URL of a subtensor node`,
  });
}

// The local network's state lives in the working directory, so that separate
// folders are separate networks (and tests stay apart).
const LOCAL_COMMITMENTS_DIR = '.local_commitments';
export const LOCAL_STORAGE_DIR = '.local_storage';

/** The hotkey that signs on --network local when no wallet is given: generated on first use. */
export function localDevHotkeyFile(cwd = process.cwd()): string {
  return path.join(cwd, LOCAL_COMMITMENTS_DIR, 'dev-hotkey');
}

/** Block time of a fresh local network: TOURNAMENT_LOCAL_BLOCK_TIME (seconds) or the hparams value. */
function localBlockTime(hparamsBlockTime: number, env: Record<string, string | undefined> = process.env): number {
  const v = env.TOURNAMENT_LOCAL_BLOCK_TIME;
  if (v === undefined || v === '') return hparamsBlockTime;
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new UserError(`TOURNAMENT_LOCAL_BLOCK_TIME must be a positive number of seconds, got ${JSON.stringify(v)}`);
  return n;
}

/** Opens the network; `blockTime` is hparams' block_time (a fresh local network's, unless overridden). */
export async function openChain(spec: NetworkSpec, blockTime: number): Promise<MinerChain> {
  if (spec.kind === 'local') {
    const { LocalChain } = await import('./local');
    return new LocalChain(path.join(process.cwd(), LOCAL_COMMITMENTS_DIR), localBlockTime(blockTime));
  }
  // Loaded only when needed: @polkadot/api is heavy.
  const { SubtensorChain } = await import('./subtensor');
  return SubtensorChain.connect(spec.name, spec.url, blockTime);
}
