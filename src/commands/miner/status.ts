// tournament miner status: where the hotkey's commitments stand.
import type { Argv, CommandModule } from 'yargs';
import { ArgsOf, withHparams, withJson, withNetwork, withWallet } from '../options';
import { minerContext, hotkeyAddress } from '../../miner/context';
import { minerStatus } from '../../miner/status';
import { report, walletChoice, WALLET_HELP } from './print';

const builder = (y: Argv) =>
  withWallet(withNetwork(withJson(withHparams(y))))
    .option('address', { type: 'string', describe: "Look at this hotkey (ss58) instead of the wallet's" })
    .epilog(
      'Pending commitments are still timelocked (their reveal block is an estimate from the drand round on subtensor); ' +
        'the chain keeps one per hotkey, and a new commitment replaces it. Revealed ones are what validators read: the ' +
        'latest is what they fetch and evaluate. With --json, one JSON document: network, netuid, hotkey, uid, ' +
        'current_block, last_commit_block, next_commit_block, pending[], revealed[] (oldest first) and latest. Read-only ' +
        `tokens in revealed commitments are not printed.\n\n${WALLET_HELP}`,
    );

type Args = ArgsOf<typeof builder>;

export const minerStatusCommand: CommandModule<{}, Args> = {
  command: 'status',
  describe: 'Show your commitments: pending or revealed, reveal block, what a validator would fetch',
  builder,
  handler: async (argv) => {
    const ctx = minerContext(argv);
    const address = await hotkeyAddress(ctx, argv.address, walletChoice(argv));
    const { chain: st, revealed, latest, nextCommitBlock: next } = await minerStatus(ctx, address);
    const doc = {
      network: ctx.network.name,
      netuid: ctx.netuid,
      hotkey: address,
      uid: st.uid,
      registered: st.uid !== null,
      current_block: st.currentBlock,
      last_commit_block: st.lastCommitBlock,
      next_commit_block: next,
      pending: st.pending.map((p) => ({ block: p.block, reveal_block: p.revealBlock, reveal_round: p.revealRound })),
      revealed,
      latest,
    };
    const lines = [
      `network   ${ctx.network.name}, subnet ${ctx.netuid}, block ${st.currentBlock}`,
      `hotkey    ${address} ${st.uid === null ? '(not registered)' : `(uid ${st.uid})`}`,
      `commits   ${st.lastCommitBlock === null ? 'none yet' : `last at block ${st.lastCommitBlock}`}; next allowed ${next <= st.currentBlock ? 'now' : `at block ${next}`}`,
    ];
    if (st.pending.length === 0) lines.push('pending   none');
    for (const p of st.pending) {
      lines.push(
        `pending   committed at block ${p.block}, reveals at block ~${p.revealBlock}${p.revealRound !== undefined ? ` (drand round ${p.revealRound})` : ''}` +
          ` (${Math.max(0, p.revealBlock - st.currentBlock)} blocks from now)`,
      );
    }
    if (revealed.length === 0) lines.push('revealed  none');
    for (const r of revealed) {
      lines.push(r.payload ? `revealed  at block ${r.block}: sha256 ${r.payload.sha256} (${r.payload.size} bytes)` : `revealed  at block ${r.block}: not a tournament commitment (${r.not_ours})`);
    }
    lines.push(latest ? `validators fetch ${latest.fetch} and check sha256 ${latest.payload!.sha256}` : 'validators have nothing of yours to fetch yet');
    report(argv.json, doc, lines);
  },
};
