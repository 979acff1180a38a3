// The weights a validator sets: the leader's uid gets 1 - burn_rate and
// burn_uid gets burn_rate; everything goes to burn_uid when there is no leader
// or the leader's hotkey is no longer registered. Normalised to u16 as the SDK
// does (src/chain/weights.ts).
import { normalizeWeightsU16 } from '../chain/weights';
import type { Neuron } from '../chain/validator-chain';

export interface WeightsPlan {
  /** u16 values as sent */
  uids: number[];
  weights: number[];
  /** the fractions before normalisation, for people */
  shares: { uid: number; share: number }[];
  leaderSubmissionId: number | null;
  reason: string;
}

export interface LeaderRef {
  submissionId: number;
  hotkey: string;
}

export function planWeights(leader: LeaderRef | null, neurons: Neuron[], burnRate: number, burnUid: number): WeightsPlan {
  const uidOf = new Map(neurons.map((n) => [n.hotkey, n.uid]));
  const leaderUid = leader ? uidOf.get(leader.hotkey) : undefined;
  const shares = new Map<number, number>();
  const add = (uid: number, share: number) => share > 0 && shares.set(uid, (shares.get(uid) ?? 0) + share);
  let reason: string;
  if (!leader) {
    add(burnUid, 1);
    reason = 'no accepted submission yet: everything to burn_uid';
  } else if (leaderUid === undefined) {
    add(burnUid, 1);
    reason = `the leader (submission ${leader.submissionId}, ${leader.hotkey}) is not registered: everything to burn_uid`;
  } else {
    add(leaderUid, 1 - burnRate);
    add(burnUid, burnRate);
    reason = `leader submission ${leader.submissionId} (uid ${leaderUid}) gets ${+(1 - burnRate).toFixed(6)}, burn_uid ${burnUid} gets ${burnRate}`;
  }
  const list = [...shares.entries()].sort((a, b) => a[0] - b[0]);
  const u16 = normalizeWeightsU16(list.map(([u]) => u), list.map(([, s]) => s));
  return {
    ...u16,
    shares: list.map(([uid, share]) => ({ uid, share })),
    leaderSubmissionId: leader && leaderUid !== undefined ? leader.submissionId : null,
    reason,
  };
}
