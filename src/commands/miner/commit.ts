// tournament miner commit [file] and miner submit [file]: the timelocked
// commitment, for code already uploaded or (submit) after uploading it.
import type { Argv, CommandModule } from 'yargs';
import { ArgsOf, withCompile, withHparams, withJson, withNetwork, withWallet } from '../options';
import { minerContext, signingHotkey, MinerContext, SigningHotkey } from '../../miner/context';
import { publish, PublishOutcome } from '../../miner/publish';
import { describeLocation } from '../../miner/storage';
import { BASELINE } from '../../submission/source';
import { hotkeyNote, report, walletChoice, STORAGE_HELP, WALLET_HELP } from './print';

const COMMIT_HELP =
  "The commitment holds the code's sha256 and where validators fetch it. On subtensor networks it is timelock-encrypted to " +
  'the drand round about reveal_blocks (hparams) ahead and sent as Commitments.set_commitment signed by the hotkey; the ' +
  'chain reveals it itself. Before anything is uploaded or sent it checks the file (as `miner test` does, compile ' +
  "included), that the commitment fits the chain's size limit, that the hotkey is registered on --netuid, that " +
  'min_blocks_between_commits have passed, and that no earlier commitment is still pending: the chain keeps one pending ' +
  'commitment per hotkey, so a new one would replace it before it is revealed (--replace-pending does that on purpose). ' +
  'On --network local it is written to .local_commitments/ with a simulated block height and the same reveal delay; ' +
  'TOURNAMENT_LOCAL_BLOCK_TIME=<seconds> makes a fresh local network faster than the 12 s blocks of hparams.';

function builder(fileHelp: string, epilog: string) {
  return (y: Argv) =>
    withCompile(withWallet(withNetwork(withJson(withHparams(y)))))
      .positional('file', { type: 'string', default: BASELINE, defaultDescription: 'local_test/train.cpp in the installation', describe: fileHelp })
      .option('replace-pending', {
        type: 'boolean',
        default: false,
        describe: 'Commit even though an earlier commitment is still pending: it is replaced and never revealed',
      })
      .epilog(epilog);
}

type Args = ArgsOf<ReturnType<typeof builder>>;

function commitLines(ctx: MinerContext, hotkey: SigningHotkey, o: PublishOutcome): string[] {
  return [
    ...hotkeyNote(hotkey),
    ...(o.replaced.length ? [`replaced the pending commitment made at block ${o.replaced[o.replaced.length - 1].block} (it will not be revealed)`] : []),
    `committed on ${ctx.network.name}, subnet ${ctx.netuid}, by hotkey ${hotkey.address} (uid ${o.uid})`,
    `  block     ${o.receipt.block}`,
    `  reveals   at block ~${o.receipt.revealBlock}${o.receipt.revealRound !== undefined ? ` (drand round ${o.receipt.revealRound})` : ''}`,
    `  sha256    ${o.payload.sha256}`,
    `  fetch     ${describeLocation(o.payload.loc)}`,
    `  size      ${o.receipt.bytes} bytes on chain`,
  ];
}

function commitDoc(ctx: MinerContext, hotkey: SigningHotkey, o: PublishOutcome) {
  return {
    network: ctx.network.name,
    netuid: ctx.netuid,
    hotkey: hotkey.address,
    dev_hotkey: hotkey.dev,
    uid: o.uid,
    block: o.receipt.block,
    reveal_block: o.receipt.revealBlock,
    reveal_round: o.receipt.revealRound,
    tx_hash: o.receipt.txHash,
    sha256: o.payload.sha256,
    fetch: describeLocation(o.payload.loc),
    replaced_pending: o.replaced.map((p) => p.block),
    compile_seconds: o.compileSeconds ?? null,
    ...(o.upload ? { key: o.upload.key, uploaded: o.upload.uploaded } : {}),
  };
}

async function run(argv: Args, upload: boolean): Promise<void> {
  const ctx = minerContext(argv);
  const hotkey = await signingHotkey(ctx, walletChoice(argv));
  const o = await publish({
    ctx,
    file: argv.file,
    hotkey,
    upload,
    compile: argv.compile,
    replacePending: argv['replace-pending'],
    onStep: argv.json ? undefined : (line) => process.stdout.write(line + '\n'),
  });
  report(argv.json, commitDoc(ctx, hotkey, o), commitLines(ctx, hotkey, o));
}

export const minerCommitCommand: CommandModule<{}, Args> = {
  command: 'commit [file]',
  describe: 'Commit uploaded code on chain, hidden until reveal_blocks have passed',
  builder: builder('The C++ source that was uploaded', `${COMMIT_HELP}\n\n${STORAGE_HELP}\n\n${WALLET_HELP}`),
  handler: (argv) => run(argv, false),
};

export const minerSubmitCommand: CommandModule<{}, Args> = {
  command: 'submit [file]',
  describe: 'Check, upload and commit the code (miner test, upload, then commit)',
  builder: builder(
    'The C++ source to submit',
    `Runs the checks of \`miner test\` (compile included), then \`miner upload\`, then \`miner commit\`. Nothing is uploaded ` +
      `until every check has passed.\n\n${COMMIT_HELP}\n\n${STORAGE_HELP}\n\n${WALLET_HELP}`,
  ),
  handler: (argv) => run(argv, true),
};
