// Shared option builders, so every command spells a flag the same way.
import type { Argv } from 'yargs';

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
