// tournament setup-benchmark: prepares benchmark/ (model config, tokenizer and
// weights, tokenized data). The presets need no network.
import type { Argv, CommandModule } from 'yargs';
import { loadHparams } from '../config/hparams';
import { PRESET_NAMES } from '../setup/presets';
import { DEFAULT_DATASET_DIR } from '../setup/dataset';
import { DEFAULT_MAX_ROWS_PER_DOCUMENT } from '../data/pack';
import { formatResult, setupPreset, SetupResult } from '../setup/setup';
import { withInterruptCleanup } from '../setup/staging';
import { ArgsOf, withBenchmarkDir, withHparams, withJson } from './options';

const builder = (y: Argv) =>
  withJson(withHparams(withBenchmarkDir(y)))
    .option('preset', {
      type: 'string',
      choices: PRESET_NAMES,
      describe: 'Write an offline setup (model shape and synthetic tokens) instead of downloading Qwen2.5-7B and FineWeb',
    })
    .option('force', {
      type: 'boolean',
      default: false,
      describe:
        'Redo the setup even if a complete one exists. The complete one stays in place, untouched, until the new one is ' +
        'ready (it is built in a .staging-<pid> folder inside the benchmark folder, reusing downloaded files after checking them)',
    })
    .option('config-only', {
      type: 'boolean',
      default: false,
      describe: 'Real setup: download config and tokenizer but not the weights (random init benchmarks)',
    })
    .option('model-revision', { type: 'string', default: 'main', describe: 'Real setup: branch, tag or commit of the model repo' })
    .option('dataset-revision', { type: 'string', default: 'main', describe: 'Real setup: branch, tag or commit of the dataset repo' })
    .option('dataset-dir', {
      type: 'string',
      default: DEFAULT_DATASET_DIR,
      describe: 'Real setup: folder of parquet files in the dataset repo to sample documents from',
    })
    .option('max-rows-per-document', {
      type: 'number',
      default: DEFAULT_MAX_ROWS_PER_DOCUMENT,
      describe:
        'Real setup: the most rows of tokens one document may fill; a longer document keeps its first N x seq_len tokens. ' +
        '1 keeps what the original tournament keeps of each document (docs/data.md); recorded in manifest.json',
    })
    .epilog(
      'The real setup reads HF_TOKEN and HF_ENDPOINT from the environment or .env, resumes interrupted downloads, ' +
        'and writes benchmark/manifest.json last: a folder without it is incomplete. Temporary files left by an ' +
        'interrupted run are removed on the next start. Without network: --preset tiny (a 2-layer model for the CPU) ' +
        "or --preset 7b-shape (Qwen2.5-7B's config, random init, no weights, and synthetic tokens, for GPU measurements).",
    );

type Args = ArgsOf<typeof builder>;

export const setupBenchmarkCommand: CommandModule<{}, Args> = {
  command: 'setup-benchmark',
  describe: 'Prepare benchmark/: model config (+ tokenizer, weights) and pre-tokenized data',
  builder,
  handler: async (argv) => {
    const hp = loadHparams(argv.hparams);
    const dir = argv['benchmark-dir'];
    const result: SetupResult = await withInterruptCleanup(dir, async () => {
      if (argv.preset) return setupPreset({ dir, preset: argv.preset, seed: hp.benchmark_data_seed, force: argv.force });
      const { setupFromHub } = await import('../setup/hub-setup');
      return setupFromHub({
        dir,
        hparams: hp,
        force: argv.force,
        configOnly: argv['config-only'],
        modelRevision: argv['model-revision'],
        datasetRevision: argv['dataset-revision'],
        datasetDir: argv['dataset-dir'],
        maxRowsPerDocument: argv['max-rows-per-document'],
      });
    });
    process.stdout.write(argv.json ? JSON.stringify({ ...result.manifest, skipped: result.skipped }, null, 2) + '\n' : formatResult(result) + '\n');
  },
};
