// The one binary: yargs with one module per command and one error boundary.
import yargs from 'yargs';
import { describeError } from './errors';
import { commands } from './commands';

export async function main(argv: string[]): Promise<void> {
  const verbose = argv.includes('--verbose');
  try {
    let y = yargs(argv)
      .scriptName('tournament')
      .usage('$0 <command> [options]\n\nTemplar Tournament: a tokens-per-second training competition for Qwen2.5-7B.')
      .option('verbose', { type: 'boolean', default: false, describe: 'Show stack traces and debug output' })
      .strict()
      .demandCommand(1, 'Give a command; see --help.')
      .recommendCommands()
      .wrap(Math.min(110, process.stdout.columns || 100))
      .fail((msg, err) => {
        if (err) throw err;
        throw new UsageError(msg);
      })
      .help();
    for (const c of commands) y = y.command(c as any);
    await y.parseAsync();
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\nRun \`tournament --help\` for usage.\n`);
      process.exitCode = 64;
      return;
    }
    const { text, exitCode } = describeError(err, verbose);
    process.stderr.write(text + '\n');
    process.exitCode = exitCode;
  }
}

class UsageError extends Error {}
