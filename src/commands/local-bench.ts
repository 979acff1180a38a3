// tournament local-bench: train the baseline for N steps on the benchmark
// model and data and report tokens/s, step time, peak memory and loss.
import type { CommandModule } from 'yargs';
import * as path from 'path';
import { loadHparams } from '../config/hparams';
import { UserError } from '../errors';
import { readTokens } from '../data/tokens';
import { defaultDevice, openModel } from '../engine/model';
import { native, Attention, Dtype } from '../engine/native';
import { withBenchmarkDir, withHparams, withJson } from './options';
import { ProgressLine } from '../util/progress';

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
      .option('peak-tflops', { type: 'number', describe: 'Device peak bf16 TFLOP/s for MFU (default: 790 on CUDA, the H200 measured rate; none on CPU)' })
      .example('$0 setup-benchmark --preset tiny && $0 local-bench', 'Benchmark the tiny default on the CPU'),
  handler: async (a) => {
    const hp = loadHparams(a.hparams);
    const intOpt = (name: string, v: number | undefined, dflt: number, min: number) => {
      const x = v ?? dflt;
      if (!Number.isInteger(x) || x < min) throw new UserError(`--${name} must be an integer >= ${min}, got ${x}`);
      return x;
    };
    const steps = intOpt('steps', a.steps, hp.eval_steps, 1);
    const warmupSteps = intOpt('warmup-steps', a['warmup-steps'], hp.warmup_steps, 0);
    const batchSize = intOpt('batch-size', a['batch-size'], hp.benchmark_batch_size, 1);
    const seed = intOpt('seed', a.seed, 1234, 0);
    const device = a.device ?? defaultDevice();
    const modelDir = path.join(a['benchmark-dir'], 'model');
    const dataFile = path.join(a['benchmark-dir'], 'data', 'train.pt');

    const progress = new ProgressLine(!a.json);
    progress.note(`loading ${dataFile}`);
    const data = readTokens(dataFile);
    progress.note(`building the model from ${modelDir} on ${device}`);
    const opened = await openModel({ modelDir, device, dtype: a.dtype, attention: a.attention, seed });
    const vocab = opened.config.vocab_size;
    for (let i = 0; i < data.ids.length; i++) {
      if (data.ids[i] >= vocab) throw new UserError(`${dataFile}: token id ${data.ids[i]} is outside the model's vocabulary of ${vocab}`);
    }

    const r = await native('benchmark', () =>
      opened.model.benchmark(
        { tokens: data.ids, samples: data.samples, seqLen: data.seqLen, batchSize, steps, warmupSteps, seed, optimizer: hp.optimizer },
        (phase, done, total) => progress.update(`${phase} step ${done}/${total}`),
      ),
    );
    progress.done();
    if (r.tokens !== r.reportedTokens) {
      throw new UserError(`the step function reported ${r.reportedTokens} tokens but was served ${r.tokens}`);
    }
    const tps = r.tokens / r.timedSeconds;
    const peak = a['peak-tflops'] ?? (device.startsWith('cuda') ? 790 : undefined);
    const mfu = peak ? (6 * opened.numParameters * tps) / (peak * 1e12) : undefined;
    const out = {
      device,
      dtype: a.dtype,
      weights: opened.weights,
      parameters: opened.numParameters,
      batch_size: batchSize,
      seq_len: data.seqLen,
      steps: r.steps,
      warmup_steps: warmupSteps,
      tokens: r.tokens,
      seconds: r.timedSeconds,
      tokens_per_second: tps,
      step_seconds: r.timedSeconds / r.steps,
      mfu: mfu ?? null,
      mfu_peak_tflops: peak ?? null,
      peak_memory_bytes: r.peakDeviceBytes >= 0 ? r.peakDeviceBytes : process.resourceUsage().maxRSS * 1024,
      peak_memory_kind: r.peakDeviceBytes >= 0 ? 'device allocated' : 'process max RSS',
      final_loss: r.finalLoss,
    };
    if (a.json) {
      process.stdout.write(JSON.stringify(out, null, 2) + '\n');
      return;
    }
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
    const lines = [
      `model        ${(opened.numParameters / 1e6).toFixed(2)}M parameters (${opened.weights} weights), ${a.dtype} on ${device}`,
      `data         ${r.steps} steps x ${batchSize} x ${data.seqLen} tokens (+${warmupSteps} warmup steps)`,
      `tokens/s     ${tps.toFixed(1)}`,
      `step time    ${(out.step_seconds * 1000).toFixed(1)} ms`,
      `MFU          ${mfu !== undefined ? `${(mfu * 100).toFixed(1)}% of ${peak} TFLOP/s (6 x params x tokens)` : 'n/a (no peak for this device; pass --peak-tflops)'}`,
      `peak memory  ${gib(out.peak_memory_bytes)} (${out.peak_memory_kind})`,
      `final loss   ${r.finalLoss.toFixed(4)}`,
    ];
    process.stdout.write(lines.join('\n') + '\n');
  },
};
