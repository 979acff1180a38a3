// tournament setup-benchmark: prepares benchmark/ (model config, tokenizer and
// weights, tokenized data). --preset tiny needs no network.
import type { CommandModule } from 'yargs';
import { loadHparams } from '../config/hparams';
import { PRESET_NAMES } from '../setup/presets';
import { formatResult, setupPreset, SetupResult } from '../setup/setup';
import { withBenchmarkDir, withHparams, withJson } from './options';

interface Args {
  'benchmark-dir': string;
  hparams: string;
  json: boolean;
  preset?: string;
  force: boolean;
  'config-only': boolean;
}

export const setupBenchmarkCommand: CommandModule<{}, Args> = {
  command: 'setup-benchmark',
  describe: 'Prepare benchmark/: model config (+ tokenizer, weights) and pre-tokenized data',
  builder: (y) =>
    withJson(withHparams(withBenchmarkDir(y)))
      .option('preset', {
        type: 'string',
        choices: PRESET_NAMES,
        describe: 'Write a small offline setup instead of downloading Qwen2.5-7B and FineWeb',
      })
      .option('force', { type: 'boolean', default: false, describe: 'Redo the setup even if a complete one exists' })
      .option('config-only', {
        type: 'boolean',
        default: false,
        describe: 'Real setup: download config and tokenizer but not the weights (random init benchmarks)',
      }) as any,
  handler: async (argv) => {
    const hp = loadHparams(argv.hparams);
    let result: SetupResult;
    if (argv.preset) {
      result = setupPreset({ dir: argv['benchmark-dir'], preset: argv.preset, seed: hp.benchmark_data_seed, force: argv.force });
    } else {
      const { setupFromHub } = await import('../setup/hub-setup');
      result = await setupFromHub({
        dir: argv['benchmark-dir'],
        hparams: hp,
        force: argv.force,
        configOnly: argv['config-only'],
      });
    }
    process.stdout.write(argv.json ? JSON.stringify({ ...result.manifest, skipped: result.skipped }, null, 2) + '\n' : formatResult(result) + '\n');
  },
};
