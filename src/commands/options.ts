// Shared option builders, so every command spells a flag the same way.
import type { Argv } from 'yargs';
import { UserError } from '../errors';

export function withJson<T>(y: Argv<T>) {
  return y.option('json', { type: 'boolean', default: false, describe: 'Print one JSON document on stdout instead of text' });
}

export function withBenchmarkDir<T>(y: Argv<T>) {
  return y.option('benchmark-dir', {
    type: 'string',
    default: 'benchmark',
    describe: 'Where setup-benchmark writes model/ and data/',
  });
}

export function withHparams<T>(y: Argv<T>) {
  return y.option('hparams', {
    type: 'string',
    default: 'hparams/hparams.json',
    describe: 'Tournament settings file',
  });
}

// Bittensor's wallet flags: --wallet.name, --wallet.hotkey, --wallet.path. They are
// flat keys (argv['wallet.name']): with dot-notation on, strict mode rejects "wallet".
export function withWallet<T>(y: Argv<T>) {
  return y
    .parserConfiguration({ 'dot-notation': false })
    .option('wallet.name', { type: 'string', default: 'default', describe: 'Wallet (coldkey) name: ~/.bittensor/wallets/NAME' })
    .option('wallet.hotkey', { type: 'string', default: 'default', describe: 'Hotkey name: NAME/hotkeys/HOTKEY (signs commitments)' })
    .option('wallet.path', { type: 'string', default: '~/.bittensor/wallets', describe: 'Folder holding the wallets' });
}

// Bittensor's network flags: --network and --netuid.
export function withNetwork<T>(y: Argv<T>) {
  return y
    .option('network', {
      type: 'string',
      default: 'finney',
      describe: 'finney, test, local (files under .local_commitments/ and .local_storage/), or a ws:// / wss:// subtensor URL',
    })
    .option('netuid', { type: 'number', describe: 'Subnet id (default: netuid in the hparams file)' });
}

/** An integer option's value (`dflt` when not given), at least `min`; otherwise a UserError naming the flag. */
export function intOption(name: string, v: number | undefined, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min) throw new UserError(`--${name} must be an integer >= ${min}, got ${x}`);
  return x;
}
