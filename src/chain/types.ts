// What the miner commands need from a network, whichever it is: subtensor
// (finney, test, a ws:// URL) or the file-backed local network.
import type { Hotkey } from '../wallet/wallet';

export interface PendingStatus {
  /** block the commitment was made at */
  block: number;
  /** block at which it is expected to be revealed (an estimate on subtensor) */
  revealBlock: number;
  /** drand round it is locked to (subtensor only) */
  revealRound?: bigint;
}

export interface RevealedStatus {
  /** block at which it was revealed */
  block: number;
  /** the plaintext bytes as the chain stores them */
  bytes: Uint8Array;
}

export interface ChainStatus {
  currentBlock: number;
  uid: number | null;
  lastCommitBlock: number | null;
  pending: PendingStatus[];
  /** oldest first */
  revealed: RevealedStatus[];
}

export interface CommitReceipt {
  /** block the commitment landed in */
  block: number;
  revealBlock: number;
  revealRound?: bigint;
  /** bytes sent on chain (ciphertext on subtensor, plaintext locally) */
  bytes: number;
  txHash?: string;
}

export interface CommitRequest {
  netuid: number;
  hotkey: Hotkey;
  plaintext: Uint8Array;
  revealBlocks: number;
}

export interface MinerChain {
  /** 'local', 'finney', 'test' or the endpoint URL: safe to print */
  readonly name: string;
  /** seconds per block: the local network's own, hparams' block_time on subtensor */
  readonly blockTime: number;
  currentBlock(): Promise<number>;
  uidOf(netuid: number, address: string): Promise<number | null>;
  lastCommitBlock(netuid: number, address: string): Promise<number | null>;
  /** sends the commitment; the caller has already checked size, registration and rate limit */
  submitCommitment(req: CommitRequest): Promise<CommitReceipt>;
  status(netuid: number, address: string): Promise<ChainStatus>;
  close(): Promise<void>;
}
