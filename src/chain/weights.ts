// Weights as subtensor takes them, built the way Bittensor's Python SDK builds
// them (bittensor 10.2 `utils/weight_utils.py` and bittensor-drand 1.2
// `src/drand.rs`, read for this file):
//
//   * set_weights(netuid, dests: Vec<u16>, weights: Vec<u16>, version_key: u64):
//     the float weights go through float32, are divided by their maximum
//     ("max-upscaled" so the largest is 1), multiplied by 65535 and rounded
//     half-to-even (Python's round); zeros are dropped with their uid.
//   * commit_timelocked_weights(netuid, commit: Bytes, reveal_round: u64,
//     commit_reveal_version: u16) when the subnet has commit-reveal on: `commit`
//     is the tle ciphertext (src/chain/timelock.ts) of the SCALE encoding of
//     WeightsTlockPayload { hotkey: Vec<u8> (the signer's 32-byte public key;
//     the chain drops the weights when it differs), uids: Vec<u16>,
//     values: Vec<u16>, version_key: u64 }, locked to the drand round published
//     SECURITY_BLOCK_OFFSET blocks into the first block of the reveal epoch.
import type { TypeRegistry } from '@polkadot/types';
import type { Codec } from '@polkadot/types/types';
import { QUICKNET, type DrandParams } from './timelock';

const U16_MAX = 65535;

/** Python's round(): to the nearest integer, ties to even. */
function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Float weights per uid to the u16 vectors set_weights takes, as the SDK's
 * convert_weights_and_uids_for_emit does (input cast to float32 first, as
 * numpy does with the SDK's default dtype). Empty when every weight is 0.
 */
export function normalizeWeightsU16(uids: number[], weights: number[]): { uids: number[]; weights: number[] } {
  if (uids.length !== weights.length) throw new Error(`${uids.length} uids but ${weights.length} weights`);
  for (const u of uids) if (!Number.isInteger(u) || u < 0 || u > U16_MAX) throw new Error(`uid ${u} is not a u16`);
  const w32 = weights.map((w) => Math.fround(w));
  if (w32.some((w) => !(w >= 0))) throw new Error(`weights must be finite and non-negative, got ${weights.join(', ')}`);
  const max = Math.max(0, ...w32);
  if (max === 0) return { uids: [], weights: [] };
  const out = { uids: [] as number[], weights: [] as number[] };
  w32.forEach((w, i) => {
    const v = roundHalfEven((w / max) * U16_MAX);
    if (v !== 0) {
      out.uids.push(uids[i]);
      out.weights.push(v);
    }
  });
  return out;
}

let registry: TypeRegistry | undefined;
/** WeightsTlockPayload as a SCALE struct (field order is the encoding order). */
const PAYLOAD_TYPE = JSON.stringify({ hotkey: 'Vec<u8>', uids: 'Vec<u16>', values: 'Vec<u16>', version_key: 'u64' });
// @polkadot/types loads on first use: it takes most of a second, and every CLI command imports this file through the validator.
// eslint-disable-next-line @typescript-eslint/no-var-requires
const payloadCodec = (v: unknown): Codec => (registry ??= new (require('@polkadot/types') as typeof import('@polkadot/types')).TypeRegistry()).createType(PAYLOAD_TYPE, v);

/** SCALE encoding of WeightsTlockPayload (the plaintext of a timelocked weights commit). */
export function encodeWeightsPayload(hotkeyPublicKey: Uint8Array, uids: number[], values: number[], versionKey: bigint): Uint8Array {
  if (hotkeyPublicKey.length !== 32) throw new Error(`a hotkey public key is 32 bytes, got ${hotkeyPublicKey.length}`);
  return payloadCodec({ hotkey: Array.from(hotkeyPublicKey), uids, values, version_key: versionKey }).toU8a();
}

/** Decodes what encodeWeightsPayload wrote (tests, and reading back a commit). */
export function decodeWeightsPayload(bytes: Uint8Array): { hotkey: Uint8Array; uids: number[]; values: number[]; versionKey: bigint } {
  // A Struct is a Map: fields are read with get() (`values` would be Map.prototype.values).
  const s = payloadCodec(bytes) as unknown as Map<string, Codec>;
  const nums = (k: string) => Array.from(s.get(k) as unknown as Codec[], (x) => Number(x.toString()));
  return {
    hotkey: (s.get('hotkey') as Codec).toU8a(true),
    uids: nums('uids'),
    values: nums('values'),
    versionKey: BigInt((s.get('version_key') as Codec).toString()),
  };
}

/** Blocks after the start of the reveal epoch at which the SDK aims the beacon. */
const SECURITY_BLOCK_OFFSET = 3;

export interface WeightsRevealInput {
  currentBlock: number;
  netuid: number;
  tempo: number;
  /** the subnet's RevealPeriodEpochs */
  revealPeriodEpochs: number;
  /** seconds per block */
  blockTime: number;
  nowMs: number;
}

/**
 * The drand round a timelocked weights commit is locked to: the epoch of
 * `currentBlock` (epochs are tempo + 1 blocks, shifted by netuid + 1), plus
 * the reveal period, at its first block plus SECURITY_BLOCK_OFFSET, converted
 * to wall time with `blockTime` and rounded down to a round (never a pulse the
 * chain has not ingested yet).
 */
export function weightsRevealRound(i: WeightsRevealInput, params: DrandParams = QUICKNET): bigint {
  const tempoPlusOne = i.tempo + 1;
  const netuidPlusOne = i.netuid + 1;
  const currentEpoch = Math.floor((i.currentBlock + netuidPlusOne) / tempoPlusOne);
  const revealEpoch = currentEpoch + i.revealPeriodEpochs;
  const firstRevealBlock = Math.max(0, revealEpoch * tempoPlusOne - netuidPlusOne);
  const blocksUntil = Math.max(0, firstRevealBlock + SECURITY_BLOCK_OFFSET - i.currentBlock);
  const target = i.nowMs / 1000 + blocksUntil * i.blockTime;
  const round = Math.floor((target - params.genesisTime) / params.period);
  return BigInt(Math.max(1, round));
}
