// What the validator needs from a network, whichever it is: the registered
// hotkeys, their revealed commitments, the subnet's weight settings, and a way
// to set weights. Subtensor (validator-subtensor.ts) or the file-backed local
// network (validator-local.ts).
import type { Hotkey } from '../wallet/wallet';
import type { NetworkSpec } from './network';

export interface Neuron {
  uid: number;
  hotkey: string;
}

export interface RevealedCommitment {
  hotkey: string;
  /** the block the chain reports with the plaintext (its reveal block) */
  block: number;
  /** the plaintext as the chain stores it: attacker-controlled */
  bytes: Uint8Array;
}

export interface WeightsSettings {
  /** CommitRevealWeightsEnabled: weights go through commit_timelocked_weights */
  commitReveal: boolean;
  /** WeightsVersionKey: the smallest version_key the chain takes */
  versionKey: bigint;
  tempo: number;
  revealPeriodEpochs: number;
  /** CommitRevealWeightsVersion */
  commitRevealVersion: number;
  /** WeightsSetRateLimit, in blocks */
  rateLimit: number;
}

export interface WeightsRequest {
  netuid: number;
  /** signs on subtensor; the local network needs none */
  hotkey: Hotkey | null;
  /** u16 values as set_weights takes them (normalizeWeightsU16) */
  uids: number[];
  weights: number[];
}

export interface WeightsReceipt {
  mode: 'set_weights' | 'commit_timelocked_weights' | 'local';
  block: number | null;
  txHash: string | null;
  revealRound: bigint | null;
  versionKey: bigint;
}

export interface ValidatorChain {
  /** 'local', 'finney', 'test' or the endpoint URL: safe to print */
  readonly name: string;
  readonly kind: 'local' | 'subtensor';
  currentBlock(): Promise<number>;
  /** every registered neuron of the subnet */
  neurons(netuid: number): Promise<Neuron[]>;
  /** the revealed commitments of these hotkeys, in any order */
  revealed(netuid: number, hotkeys: string[]): Promise<RevealedCommitment[]>;
  weightsSettings(netuid: number): Promise<WeightsSettings>;
  /** sets (or, with commit-reveal on, commits) weights signed by the validator's hotkey */
  setWeights(req: WeightsRequest): Promise<WeightsReceipt>;
  close(): Promise<void>;
}

/** Opens the network for a validator (local: in the working directory); `blockTime` is hparams' block_time. */
export async function openValidatorChain(spec: NetworkSpec, blockTime: number): Promise<ValidatorChain> {
  if (spec.kind === 'local') {
    const { LocalValidatorChain } = await import('./validator-local');
    return LocalValidatorChain.open(blockTime);
  }
  const { SubtensorValidatorChain } = await import('./validator-subtensor');
  return SubtensorValidatorChain.connect(spec.name, spec.url, blockTime);
}
