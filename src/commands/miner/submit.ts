// tournament miner submit [file]: upload, then commit.
import type { CommandModule } from 'yargs';
import { commitBuilder, runCommit, Args, COMMIT_HELP } from './commit';
import { STORAGE_HELP } from './upload';

export const minerSubmitCommand: CommandModule<{}, Args> = {
  command: 'submit [file]',
  describe: 'Upload the code and commit it (upload, then commit)',
  builder: commitBuilder(
    'The C++ source to submit',
    `Runs \`miner upload\` then \`miner commit\`. The file and the wallet are checked before anything is uploaded.\n\n${COMMIT_HELP}\n\n${STORAGE_HELP}`,
  ),
  handler: (argv) => runCommit(argv, true),
};
