// tournament miner <command>: everything a miner does after optimising.
import type { Argv, CommandModule } from 'yargs';
import { minerTestCommand } from './miner/test';
import { minerUploadCommand } from './miner/upload';
import { minerCommitCommand, minerSubmitCommand } from './miner/commit';
import { minerStatusCommand } from './miner/status';

export const minerCommand: CommandModule = {
  command: 'miner <command>',
  describe: 'Test, upload, commit and track your submission',
  builder: (y: Argv) =>
    y
      .command(minerTestCommand as CommandModule)
      .command(minerUploadCommand as CommandModule)
      .command(minerCommitCommand as CommandModule)
      .command(minerSubmitCommand as CommandModule)
      .command(minerStatusCommand as CommandModule)
      .demandCommand(1, 'Give a miner command; see `tournament miner --help`.')
      .epilog(
        'A typical round: `miner test` (structure, size, compile), then `miner submit` (the same checks, then upload to ' +
          'your bucket, then a timelocked commitment signed by your hotkey), then `miner status` until it is revealed. ' +
          'Use --network local to try it all without a chain, a bucket or a wallet.',
      ),
  handler: () => undefined,
};
