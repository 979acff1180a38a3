// The shapes of the subtensor calls and storage this project touches, kept in
// one place so the live client (ApiPromise) and the offline tests (a registry
// built from real finney metadata) build and read them the same way.
//
//   Commitments.set_commitment(netuid: u16, info: CommitmentInfo { fields: Vec<Data> })
//     Data::TimelockEncrypted { encrypted: BoundedVec<u8, 1024>, reveal_round: u64 } (variant 134)
//   Commitments.CommitmentOf(netuid, AccountId) -> Option<Registration { deposit, block, info }>
//   Commitments.RevealedCommitments(netuid, AccountId) -> Option<Vec<(Bytes, u64)>>   (last 10)
//   Commitments.LastCommitment(netuid, AccountId) -> Option<BlockNumber>
//   SubtensorModule.Uids(netuid, AccountId) -> Option<u16>
import type { Codec } from '@polkadot/types/types';
import { u8aToHex } from '@polkadot/util';

/** Subtensor's own signed extensions: both carry no data, declared so signing knows them. */
export const SUBTENSOR_SIGNED_EXTENSIONS = {
  SubtensorTransactionExtension: { extrinsic: {}, payload: {} },
  DrandPriority: { extrinsic: {}, payload: {} },
};

/** The `info` argument of set_commitment holding one timelocked field. */
export function timelockCommitmentInfo(encrypted: Uint8Array, revealRound: bigint) {
  return { fields: [{ TimelockEncrypted: { encrypted: u8aToHex(encrypted), reveal_round: revealRound } }] };
}

export interface PendingField {
  revealRound: bigint;
  encryptedBytes: number;
}

export interface PendingCommitment {
  block: number;
  fields: PendingField[];
}

export interface RevealedEntry {
  bytes: Uint8Array;
  block: number;
}

function unwrapOption(c: Codec): Codec | null {
  const o = c as unknown as { isSome?: boolean; isNone?: boolean; unwrap?: () => Codec; isEmpty: boolean };
  if (typeof o.isSome === 'boolean') return o.isSome ? (o.unwrap as () => Codec)() : null;
  return c.isEmpty ? null : c;
}

/** Reads a Commitments.CommitmentOf value; null when absent. Only timelocked fields are listed. */
export function parseCommitmentOf(value: Codec): PendingCommitment | null {
  const reg = unwrapOption(value);
  if (!reg) return null;
  const j = reg.toJSON() as { block: number; info: { fields: Record<string, unknown>[] } };
  const fields: PendingField[] = [];
  for (const f of j.info.fields) {
    const tl = (f.timelockEncrypted ?? f.TimelockEncrypted) as { encrypted: string; revealRound?: number | string; reveal_round?: number | string } | undefined;
    if (tl) {
      fields.push({
        revealRound: BigInt(tl.revealRound ?? tl.reveal_round ?? 0),
        encryptedBytes: (tl.encrypted.length - 2) / 2,
      });
    }
  }
  return { block: Number(j.block), fields };
}

/** Reads a Commitments.RevealedCommitments value, oldest first; [] when absent. */
export function parseRevealedCommitments(value: Codec): RevealedEntry[] {
  const v = unwrapOption(value);
  if (!v) return [];
  const arr = v as unknown as Array<[Codec, Codec]>;
  return Array.from(arr, ([bytes, block]) => ({ bytes: bytes.toU8a(true), block: Number(block.toString()) }));
}

/** Reads an Option<number-like> (Uids, LastCommitment); null when absent. */
export function parseOptionalNumber(value: Codec): number | null {
  const v = unwrapOption(value);
  return v ? Number(v.toString()) : null;
}
