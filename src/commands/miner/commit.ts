// tournament miner commit [file]: the timelocked commitment for code already uploaded.
import type { Argv, CommandModule } from 'yargs';
import { withHparams, withJson, withNetwork, withWallet } from '../options';
import {
  context,
  readCheckedSource,
  storageFor,
  hotkeyFor,
  prepareCommit,
  sendCommit,
  withChain,
  report,
  describeLocation,
  DEFAULT_SOURCE,
  CommonArgs,
  CommitOutcome,
  Context,
} from './common';
import type { Hotkey } from '../../wallet/wallet';
import { UserError } from '../../errors';
import { uploadCode } from '../../storage/store';
import { STORAGE_HELP } from './upload';

export interface Args extends CommonArgs {
  file: string;
}

export const COMMIT_HELP =
  'The commitment holds the code\'s sha256 and where validators fetch it. On subtensor networks it is timelock-encrypted to ' +
  'the drand round about reveal_blocks (hparams) ahead and sent as Commitments.set_commitment signed by the hotkey; the ' +
  'chain reveals it itself. Before sending, it checks that the code is uploaded, that the commitment fits the chain\'s ' +
  'size limit, that the hotkey is registered on --netuid, and that min_blocks_between_commits have passed. On --network ' +
  'local it is written to .local_commitments/ with a simulated block height and the same reveal delay.';

function commitLines(ctx: Context, hotkey: Hotkey, o: CommitOutcome): string[] {
  return [
    `committed on ${ctx.network.name}, subnet ${ctx.netuid}, by hotkey ${hotkey.address} (uid ${o.uid})`,
    `  block     ${o.receipt.block}`,
    `  reveals   at block ~${o.receipt.revealBlock}${o.receipt.revealRound !== undefined ? ` (drand round ${o.receipt.revealRound})` : ''}`,
    `  sha256    ${o.payload.sha256}`,
    `  fetch     ${describeLocation(o.payload.loc)}`,
    `  size      ${o.receipt.bytes} bytes on chain`,
  ];
}

function commitDoc(ctx: Context, hotkey: Hotkey, o: CommitOutcome) {
  return {
    network: ctx.network.name,
    netuid: ctx.netuid,
    hotkey: hotkey.address,
    uid: o.uid,
    block: o.receipt.block,
    reveal_block: o.receipt.revealBlock,
    reveal_round: o.receipt.revealRound,
    tx_hash: o.receipt.txHash,
    sha256: o.payload.sha256,
    fetch: describeLocation(o.payload.loc),
  };
}

/** The flags of commit and submit. */
export function commitBuilder(fileHelp: string, epilog: string) {
  return (y: Argv<{}>) =>
    withWallet(withNetwork(withJson(withHparams(y))))
      .positional('file', { type: 'string', default: DEFAULT_SOURCE, describe: fileHelp })
      .epilog(epilog) as unknown as Argv<Args>;
}

/** commit, or with `upload` submit: every check runs before anything is written or sent. */
export async function runCommit(argv: Args, upload: boolean): Promise<void> {
  const ctx = context(argv);
  const source = readCheckedSource(argv.file, ctx.hp.max_code_bytes);
  const hotkey = await hotkeyFor(argv);
  const target = await storageFor(ctx.network);
  try {
    const up = upload ? await uploadCode(target.store, source.bytes) : undefined;
    if (up && !argv.json) process.stdout.write(`${up.uploaded ? 'uploaded' : 'already uploaded'}: ${up.key} to ${target.store.description}\n`);
    let o: CommitOutcome;
    try {
      const prepared = await prepareCommit(target, source, up && { size: up.size });
      o = await withChain(ctx, (chain) => sendCommit(ctx, chain, hotkey, prepared));
    } catch (e) {
      if (up && e instanceof UserError) {
        const hint = `the code is uploaded (${up.key}); once fixed, run \`tournament miner commit\` to commit it${e.hint ? `; ${e.hint}` : ''}`;
        throw new UserError(e.message, { hint, exitCode: e.exitCode });
      }
      throw e;
    }
    const extra = up ? { key: up.key, uploaded: up.uploaded } : {};
    report(argv.json, { ...commitDoc(ctx, hotkey, o), ...extra }, commitLines(ctx, hotkey, o));
  } finally {
    target.close();
  }
}

export const minerCommitCommand: CommandModule<{}, Args> = {
  command: 'commit [file]',
  describe: 'Commit uploaded code on chain, hidden until reveal_blocks have passed',
  builder: commitBuilder('The C++ source that was uploaded', `${COMMIT_HELP}\n\n${STORAGE_HELP}`),
  handler: (argv) => runCommit(argv, false),
};
