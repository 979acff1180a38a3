// Who leads. The leader is a pure function of the accepted submissions, taken
// in commitment order (reveal block, then id): the first accepted submission
// leads; a later one takes the lead only when its score beats the leader's by
// more than the threshold in force at its block:
//
//   score > leader_score * (1 + threshold(block))
//   threshold(block) = base + (t0 - base) * (1 - decay_percent) ^ ((block - lead_block) / decay_interval_blocks)
//
// where t0 is set when the lead changes hands: the improvement the new leader
// made (new / old - 1), at least `base`, at most `max`. A big jump is thus
// protected by a high bar that decays towards `base` (the adaptive threshold
// of the upstream tournament). Ties, and anything within the threshold, stay
// with the earlier commitment. Because the fold runs over commitment order, the
// order in which evaluations finish never changes the outcome.
import type { LeaderThreshold } from '../config/hparams';

export interface Scored {
  id: number;
  block: number;
  score: number;
}

export interface Leadership {
  leader: Scored;
  /** the block the current leader took the lead at (its own block) */
  since: number;
  /** t0: the threshold right after the lead changed */
  initialThreshold: number;
}

export function thresholdAt(l: Leadership, block: number, p: LeaderThreshold): number {
  const steps = Math.max(0, block - l.since) / p.decay_interval_blocks;
  return p.base + (l.initialThreshold - p.base) * Math.pow(1 - p.decay_percent, steps);
}

/** Runs the fold; returns every change of leader, the last being the current one. */
export function leadershipHistory(accepted: Scored[], p: LeaderThreshold): { leadership: Leadership; threshold: number }[] {
  const ordered = [...accepted].sort((a, b) => a.block - b.block || a.id - b.id);
  const changes: { leadership: Leadership; threshold: number }[] = [];
  let cur: Leadership | null = null;
  for (const s of ordered) {
    if (!(s.score > 0)) continue;
    if (cur === null) {
      cur = { leader: s, since: s.block, initialThreshold: p.base };
      changes.push({ leadership: cur, threshold: 0 });
      continue;
    }
    const t = thresholdAt(cur, s.block, p);
    if (s.score > cur.leader.score * (1 + t)) {
      const improvement: number = s.score / cur.leader.score - 1;
      cur = { leader: s, since: s.block, initialThreshold: Math.min(p.max, Math.max(p.base, improvement)) };
      changes.push({ leadership: cur, threshold: t });
    }
  }
  return changes;
}

export function currentLeader(accepted: Scored[], p: LeaderThreshold): Leadership | null {
  const h = leadershipHistory(accepted, p);
  return h.length ? h[h.length - 1].leadership : null;
}

/** The score a new submission revealed at `block` must exceed to take the lead; null when anyone accepted would. */
export function scoreToBeat(l: Leadership | null, block: number, p: LeaderThreshold): number | null {
  return l ? l.leader.score * (1 + thresholdAt(l, block, p)) : null;
}
