// What `tournament status` shows, read from the validator's database: the
// leader and the score to beat, the leaderboard, recent submissions with
// their verdicts and reasons, and the latest weights.
import type { Hparams } from '../config/hparams';
import { currentLeader, thresholdAt } from './scoring';
import type { SubmissionRow, ValidatorStore, WeightsRow } from './store';

export interface SubmissionDoc {
  id: number;
  hotkey: string;
  uid: number | null;
  block: number;
  sha256: string | null;
  state: SubmissionRow['state'];
  reject_code: string | null;
  reasons: string[];
  tokens_per_second: number | null;
  attempts: number;
  discovered_at: string;
  finished_at: string | null;
  seeds: number[];
}

export interface StatusDoc {
  network: string | null;
  netuid: number | null;
  last_block: number | null;
  last_pass_at: string | null;
  counts: Record<SubmissionRow['state'], number>;
  evaluating: SubmissionDoc | null;
  leader: (SubmissionDoc & { since_block: number; threshold_now: number; score_to_beat: number }) | null;
  leaderboard: (SubmissionDoc & { rank: number; leader: boolean })[];
  recent: SubmissionDoc[];
  weights: (Omit<WeightsRow, 'uids' | 'weights'> & { uids: number[]; weights: number[] }) | null;
}

function doc(store: ValidatorStore, s: SubmissionRow): SubmissionDoc {
  const seeds = (store.runsOf(s.id) as { role: string; seed: number }[]).filter((r) => r.role === 'submission').map((r) => r.seed);
  return {
    id: s.id,
    hotkey: s.hotkey,
    uid: s.uid,
    block: s.block,
    sha256: s.sha256,
    state: s.state,
    reject_code: s.reject_code,
    reasons: s.reasons ? (JSON.parse(s.reasons) as string[]) : [],
    tokens_per_second: s.tokens_per_second,
    attempts: s.attempts,
    discovered_at: s.discovered_at,
    finished_at: s.finished_at,
    seeds,
  };
}

export function buildStatus(store: ValidatorStore, hp: Hparams, limit: number): StatusDoc {
  const num = (k: string) => {
    const v = store.meta(k);
    return v === null ? null : Number(v);
  };
  const accepted = store.accepted();
  const lead = currentLeader(accepted.map((r) => ({ id: r.id, block: r.block, score: r.tokens_per_second as number })), hp.leader_threshold);
  const lastBlock = num('last_block');
  const evaluating = store.db.prepare(`SELECT * FROM submissions WHERE state = 'evaluating' LIMIT 1`).get() as SubmissionRow | undefined;
  let leader: StatusDoc['leader'] = null;
  if (lead) {
    const t = thresholdAt(lead, lastBlock ?? lead.since, hp.leader_threshold);
    leader = { ...doc(store, store.submission(lead.leader.id) as SubmissionRow), since_block: lead.since, threshold_now: t, score_to_beat: lead.leader.score * (1 + t) };
  }
  const board = [...accepted].sort((a, b) => (b.tokens_per_second as number) - (a.tokens_per_second as number) || a.block - b.block).slice(0, limit);
  const w = store.lastWeightsAttempt();
  return {
    network: store.meta('network'),
    netuid: num('netuid'),
    last_block: lastBlock,
    last_pass_at: store.meta('last_pass_at'),
    counts: store.countByState(),
    evaluating: evaluating ? doc(store, evaluating) : null,
    leader,
    leaderboard: board.map((s, i) => ({ ...doc(store, s), rank: i + 1, leader: s.id === lead?.leader.id })),
    recent: store.recent(limit).map((s) => doc(store, s)),
    weights: w ? { ...w, uids: JSON.parse(w.uids) as number[], weights: JSON.parse(w.weights) as number[] } : null,
  };
}
