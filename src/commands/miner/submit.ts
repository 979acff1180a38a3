// tournament miner submit [file]: upload, then commit.
import type { Argv, CommandModule } from 'yargs';
import { UserError } from '../../errors';
import { withHparams, withJson, withNetwork, withWallet } from '../options';
import { uploadCode } from '../../storage/store';
import { context, readCheckedSource, storageFor, hotkeyFor, prepareCommit, sendCommit, withChain, report, DEFAULT_SOURCE, CommonArgs } from './common';
import { commitDoc, commitLines, COMMIT_HELP } from './commit';
import { STORAGE_HELP } from './upload';

interface Args extends CommonArgs {
  file: string;
}

export const minerSubmitCommand: CommandModule<{}, Args> = {
  command: 'submit [file]',
  describe: 'Upload the code and commit it (upload, then commit)',
  builder: (y: Argv<{}>) =>
    withWallet(withNetwork(withJson(withHparams(y))))
      .positional('file', { type: 'string', default: DEFAULT_SOURCE, describe: 'The C++ source to submit' })
      .epilog(`Runs \`miner upload\` then \`miner commit\`. The wallet is checked before anything is uploaded.\n\n${COMMIT_HELP}\n\n${STORAGE_HELP}`) as unknown as Argv<Args>,
  handler: async (argv) => {
    const ctx = context(argv);
    const source = readCheckedSource(argv.file, ctx.hp.max_code_bytes);
    const hotkey = await hotkeyFor(argv);
    const target = storageFor(ctx.network);
    try {
      const up = await uploadCode(target.store, source.bytes);
      if (!argv.json) process.stdout.write(`${up.uploaded ? 'uploaded' : 'already uploaded'}: ${up.key} to ${target.store.description}\n`);
      let o;
      try {
        const prepared = await prepareCommit(target, source);
        o = await withChain(ctx, (chain) => sendCommit(ctx, chain, hotkey, prepared));
      } catch (e) {
        if (e instanceof UserError) {
          throw new UserError(`${e.message}`, { hint: `the code is uploaded (${up.key}); once fixed, run \`tournament miner commit\` to commit it${e.hint ? `; ${e.hint}` : ''}`, exitCode: e.exitCode });
        }
        throw e;
      }
      report(argv.json, { ...commitDoc(ctx, hotkey, o), key: up.key, uploaded: up.uploaded }, commitLines(ctx, hotkey, o));
    } finally {
      target.close();
    }
  },
};
