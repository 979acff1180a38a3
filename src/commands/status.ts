// tournament status: the validator's view, read from its database (while it
// runs or not): leader and the score to beat, leaderboard, recent submissions
// with verdicts and reasons, the latest weights.
import type { Argv, CommandModule } from 'yargs';
import * as path from 'path';
import { loadHparams } from '../config/hparams';
import { UserError } from '../errors';
import { buildStatus, type StatusDoc, type SubmissionDoc } from '../validator/report';
import { ValidatorStore } from '../validator/store';
import { withDataDir } from './evaluate';
import { intOption, withHparams, withJson } from './options';

interface Args {
  'data-dir': string;
  hparams: string;
  json: boolean;
  limit: number;
}

const tps = (x: number | null) => (x === null ? '-' : x.toFixed(1));
const short = (h: string) => `${h.slice(0, 10)}…`;

function line(s: SubmissionDoc): string {
  const what = s.state === 'accepted' ? `${tps(s.tokens_per_second)} tokens/s` : s.state === 'rejected' ? `${s.reject_code}: ${s.reasons.join('; ')}` : s.state;
  return `  #${String(s.id).padEnd(4)} uid ${String(s.uid ?? '-').padEnd(4)} ${short(s.hotkey)} block ${String(s.block).padEnd(8)} ${s.state.padEnd(10)} ${what}`;
}

export function formatStatus(d: StatusDoc): string {
  const out: string[] = [];
  out.push(`network   ${d.network}, subnet ${d.netuid}; last pass ${d.last_pass_at ?? 'never'}${d.last_block !== null ? ` at block ${d.last_block}` : ''}`);
  out.push(`queue     ${d.counts.pending} pending, ${d.counts.evaluating} evaluating, ${d.counts.accepted} accepted, ${d.counts.rejected} rejected`);
  if (d.evaluating) out.push(`now       evaluating #${d.evaluating.id} (${short(d.evaluating.hotkey)}), attempt ${d.evaluating.attempts}`);
  if (d.leader) {
    out.push(
      `leader    #${d.leader.id} uid ${d.leader.uid ?? '-'} ${d.leader.hotkey}: ${tps(d.leader.tokens_per_second)} tokens/s, leading since block ${d.leader.since_block}; ` +
        `to take the lead: more than ${tps(d.leader.score_to_beat)} (threshold ${(d.leader.threshold_now * 100).toFixed(2)}%)`,
    );
  } else out.push('leader    none yet');
  if (d.weights) {
    const pairs = d.weights.uids.map((u, i) => `${u}:${d.weights!.weights[i]}`).join(' ');
    out.push(`weights   block ${d.weights.block}, ${d.weights.status}${d.weights.mode ? ` (${d.weights.mode})` : ''}: ${pairs || '(none)'}; ${d.weights.reason}${d.weights.error ? `; error: ${d.weights.error}` : ''}`);
  } else out.push('weights   none set yet');
  out.push('leaderboard');
  if (d.leaderboard.length === 0) out.push('  (no accepted submission)');
  for (const s of d.leaderboard) out.push(`  ${String(s.rank).padStart(2)}. ${tps(s.tokens_per_second).padStart(10)} tokens/s  #${s.id} uid ${s.uid ?? '-'} ${short(s.hotkey)} block ${s.block}${s.leader ? '  <- leader' : ''}`);
  out.push('recent submissions');
  if (d.recent.length === 0) out.push('  (none)');
  for (const s of d.recent) out.push(line(s));
  return out.join('\n');
}

export const statusCommand: CommandModule<object, Args> = {
  command: 'status',
  describe: 'Show the validator\'s leaderboard, leader, recent submissions with verdicts, and last weights',
  builder: (y) =>
    withJson(withHparams(withDataDir(y)))
      .option('limit', { type: 'number', default: 20, describe: 'Rows of the leaderboard and of recent submissions' })
      .epilogue(
        'Reads the database `tournament evaluate` keeps in --data-dir (safe while it runs). The leader and the score to beat ' +
          'follow from the accepted verdicts and hparams\' leader_threshold. With --json: one document with network, netuid, ' +
          'last_block, counts, evaluating, leader, leaderboard[], recent[] (each with state, reject_code, reasons, tokens_per_second, seeds) and weights.',
      ) as unknown as Argv<Args>,
  handler: (a) => {
    const limit = intOption('limit', a.limit, 20, 1);
    const store = ValidatorStore.openReadOnly(path.resolve(a['data-dir']));
    if (!store) throw new UserError(`no validator database in ${path.resolve(a['data-dir'])}`, { hint: 'run `tournament evaluate` first, or pass the --data-dir it uses' });
    try {
      const d = buildStatus(store, loadHparams(a.hparams), limit);
      process.stdout.write((a.json ? JSON.stringify(d, null, 2) : formatStatus(d)) + '\n');
    } finally {
      store.close();
    }
  },
};
