// Shared option builders, so every command spells a flag the same way. Each
// returns the Argv with the flag's type added, so a command's argument type is
// inferred from its builder (ArgsOf) instead of being declared again and cast.
import type { Argv } from 'yargs';
import { UserError } from '../errors';
import { DEFAULT_BENCHMARK_DIR, HPARAMS_FILE } from '../util/paths';

/** The parsed arguments of a builder: `type Args = ArgsOf<typeof builder>`. */
export type ArgsOf<B extends (y: Argv) => Argv<unknown>> = ReturnType<B> extends Argv<infer A> ? A : never;

export function withJson<T>(y: Argv<T>) {
  return y.option('json', { type: 'boolean', default: false, describe: 'Print one JSON document on stdout instead of text' });
}

// Project files default to the installation's own, so commands work from any folder.
export function withBenchmarkDir<T>(y: Argv<T>) {
  return y.option('benchmark-dir', {
    type: 'string',
    default: DEFAULT_BENCHMARK_DIR,
    defaultDescription: 'benchmark/ in the installation',
    describe: 'Where setup-benchmark writes model/ and data/',
  });
}

export function withHparams<T>(y: Argv<T>) {
  return y.option('hparams', {
    type: 'string',
    default: HPARAMS_FILE,
    defaultDescription: 'hparams/hparams.json in the installation',
    describe: 'Tournament settings file',
  });
}

// Bittensor's wallet flags: --wallet.name, --wallet.hotkey, --wallet.path. They are
// flat keys (argv['wallet.name']): with dot-notation on, strict mode rejects "wallet".
// No yargs default: an absent flag stays undefined, so --network local can tell
// "no wallet asked for" (use the local development hotkey) from an explicit choice.
export function withWallet<T>(y: Argv<T>) {
  return y
    .parserConfiguration({ 'dot-notation': false })
    .option('wallet.name', { type: 'string', defaultDescription: 'default', describe: 'Wallet (coldkey) name: WALLETS/NAME' })
    .option('wallet.hotkey', { type: 'string', defaultDescription: 'default', describe: 'Hotkey name: WALLETS/NAME/hotkeys/HOTKEY (signs commitments)' })
    .option('wallet.path', { type: 'string', defaultDescription: '~/.bittensor/wallets', describe: 'Folder holding the wallets (WALLETS)' });
}

// Bittensor's network flags: --network and --netuid.
export function withNetwork<T>(y: Argv<T>) {
  return y
    .option('network', {
      type: 'string',
      default: 'finney',
      describe: 'finney, test, local (files under .local_commitments/ and .local_storage/ in this folder), or a ws:// / wss:// subtensor URL',
    })
    .option('netuid', { type: 'number', describe: 'Subnet id (default: netuid in the hparams file)' });
}

/** An integer option's value (`dflt` when not given), at least `min`; otherwise a UserError naming the flag. */
export function intOption(name: string, v: number | undefined, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min) throw new UserError(`--${name} must be an integer >= ${min}, got ${x}`);
  return x;
}

// Whether upload, commit and submit compile the code first, as `miner test` does.
export function withCompile<T>(y: Argv<T>) {
  return y.option('compile', {
    type: 'boolean',
    default: true,
    describe: 'Compile the code as a validator would before anything is uploaded or committed (--no-compile skips it; needs the engine built)',
  });
}
