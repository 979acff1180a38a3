// tournament local-bench: train the baseline on the benchmark model and data
// and report tokens/s, step time, MFU, peak memory and loss.
import type { CommandModule } from 'yargs';
import { loadHparams } from '../config/hparams';
import { UserError } from '../errors';
import { formatLocalBench, runLocalBench } from '../engine/bench';
import { defaultDevice } from '../engine/model';
import type { Attention, Dtype } from '../engine/native';
import { ProgressLine } from '../util/progress';
import { withBenchmarkDir, withHparams, withJson } from './options';

/** The H200's measured bf16 matrix-multiply rate (DESIGN.md), the MFU peak on CUDA. */
export const H200_MEASURED_BF16_TFLOPS = 790;

interface Args {
  'benchmark-dir': string;
  hparams: string;
  json: boolean;
  device?: string;
  dtype: Dtype;
  attention: Attention;
  steps?: number;
  'warmup-steps'?: number;
  'batch-size'?: number;
  seed: number;
  'peak-tflops'?: number;
}

function intOption(name: string, v: number | undefined, dflt: number, min: number): number {
  const x = v ?? dflt;
  if (!Number.isInteger(x) || x < min) throw new UserError(`--${name} must be an integer >= ${min}, got ${x}`);
  return x;
}

export const localBenchCommand: CommandModule<object, Args> = {
  command: 'local-bench',
  describe: 'Train the baseline on the benchmark model and data and report tokens/s',
  builder: (y) =>
    withJson(withHparams(withBenchmarkDir(y)))
      .option('device', { type: 'string', describe: 'cpu, cuda or cuda:N (default: cuda when available)' })
      .option('dtype', { choices: ['bfloat16', 'float32'] as const, default: 'bfloat16' as Dtype, describe: 'Parameter dtype' })
      .option('attention', { choices: ['auto', 'sdpa', 'math'] as const, default: 'auto' as Attention, describe: 'Attention kernel' })
      .option('steps', { type: 'number', describe: 'Timed optimizer steps (default: hparams eval_steps)' })
      .option('warmup-steps', { type: 'number', describe: 'Untimed steps on other data first (default: hparams warmup_steps)' })
      .option('batch-size', { type: 'number', describe: 'Samples per step (default: hparams benchmark_batch_size)' })
      .option('seed', { type: 'number', default: 1234, describe: 'Seeds the initialisation and the data order' })
      .option('peak-tflops', {
        type: 'number',
        describe: `Device peak bf16 TFLOP/s for MFU (default: ${H200_MEASURED_BF16_TFLOPS} on CUDA, the H200's measured rate; none on CPU)`,
      })
      .example('$0 setup-benchmark --preset tiny && $0 local-bench', 'Benchmark the tiny default on the CPU'),
  handler: async (a) => {
    const hparams = loadHparams(a.hparams);
    const device = a.device ?? defaultDevice();
    const progress = new ProgressLine(!a.json);
    const r = await runLocalBench({
      benchmarkDir: a['benchmark-dir'],
      hparams,
      device,
      dtype: a.dtype,
      attention: a.attention,
      steps: intOption('steps', a.steps, hparams.eval_steps, 1),
      warmupSteps: intOption('warmup-steps', a['warmup-steps'], hparams.warmup_steps, 0),
      batchSize: intOption('batch-size', a['batch-size'], hparams.benchmark_batch_size, 1),
      seed: intOption('seed', a.seed, 1234, 0),
      peakTflops: a['peak-tflops'] ?? (device.startsWith('cuda') ? H200_MEASURED_BF16_TFLOPS : undefined),
      onNote: (t) => progress.note(t),
      onProgress: (phase, done, total) => progress.update(`${phase} step ${done}/${total}`),
    });
    progress.done();
    process.stdout.write((a.json ? JSON.stringify(r, null, 2) : formatLocalBench(r)) + '\n');
  },
};
