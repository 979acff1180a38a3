// The local benchmark of issue 2: the baseline trained in-process on the
// benchmark model and data. The command (commands/local-bench.ts) only parses
// flags and prints; scripts reuse this directly.
import * as path from 'path';
import type { Hparams } from '../config/hparams';
import { readTokens } from '../data/tokens';
import { UserError } from '../errors';
import { openModel } from './model';
import { Attention, Dtype, native } from './native';

export interface LocalBenchOptions {
  benchmarkDir: string;
  hparams: Hparams;
  device: string;
  dtype: Dtype;
  attention: Attention;
  steps: number;
  warmupSteps: number;
  batchSize: number;
  seed: number;
  /** Device peak bf16 TFLOP/s for MFU; undefined: no MFU. */
  peakTflops?: number;
  onNote?: (text: string) => void;
  onProgress?: (phase: string, done: number, total: number) => void;
}

export interface LocalBenchResult {
  device: string;
  dtype: Dtype;
  weights: 'checkpoint' | 'random';
  parameters: number;
  batch_size: number;
  seq_len: number;
  steps: number;
  warmup_steps: number;
  tokens: number;
  seconds: number;
  tokens_per_second: number;
  step_seconds: number;
  mfu: number | null;
  mfu_peak_tflops: number | null;
  setup_seconds: number;
  peak_memory_bytes: number;
  peak_memory_kind: 'device allocated' | 'process max RSS';
  final_loss: number;
}

export async function runLocalBench(o: LocalBenchOptions): Promise<LocalBenchResult> {
  const t0 = Date.now();
  const modelDir = path.join(o.benchmarkDir, 'model');
  const dataFile = path.join(o.benchmarkDir, 'data', 'train.pt');
  o.onNote?.(`loading ${dataFile}`);
  const data = readTokens(dataFile);
  o.onNote?.(`building the model from ${modelDir} on ${o.device}`);
  const opened = await openModel({ modelDir, device: o.device, dtype: o.dtype, attention: o.attention, seed: o.seed });
  const vocab = opened.config.vocab_size;
  for (let i = 0; i < data.ids.length; i++) {
    if (data.ids[i] >= vocab) throw new UserError(`${dataFile}: token id ${data.ids[i]} is outside the model's vocabulary of ${vocab}`);
  }
  const setupSeconds = (Date.now() - t0) / 1000;
  const r = await native('benchmark', () =>
    opened.model.benchmark(
      {
        tokens: data.ids,
        samples: data.samples,
        seqLen: data.seqLen,
        batchSize: o.batchSize,
        steps: o.steps,
        warmupSteps: o.warmupSteps,
        seed: o.seed,
        optimizer: o.hparams.optimizer,
      },
      o.onProgress,
    ),
  );
  if (r.tokens !== r.reportedTokens) {
    throw new UserError(`the step function reported ${r.reportedTokens} tokens but was served ${r.tokens}`);
  }
  const tps = r.tokens / r.timedSeconds;
  const mfu = o.peakTflops ? (6 * opened.numParameters * tps) / (o.peakTflops * 1e12) : null;
  const onDevice = r.peakDeviceBytes >= 0;
  return {
    device: o.device,
    dtype: o.dtype,
    weights: opened.weights,
    parameters: opened.numParameters,
    batch_size: o.batchSize,
    seq_len: data.seqLen,
    steps: r.steps,
    warmup_steps: o.warmupSteps,
    tokens: r.tokens,
    seconds: r.timedSeconds,
    tokens_per_second: tps,
    step_seconds: r.timedSeconds / r.steps,
    mfu,
    mfu_peak_tflops: o.peakTflops ?? null,
    setup_seconds: setupSeconds,
    peak_memory_bytes: onDevice ? r.peakDeviceBytes : process.resourceUsage().maxRSS * 1024,
    peak_memory_kind: onDevice ? 'device allocated' : 'process max RSS',
    final_loss: r.finalLoss,
  };
}

/** The human report of a local benchmark. */
export function formatLocalBench(r: LocalBenchResult): string {
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  return [
    `model        ${(r.parameters / 1e6).toFixed(2)}M parameters (${r.weights} weights), ${r.dtype} on ${r.device}`,
    `data         ${r.steps} steps x ${r.batch_size} x ${r.seq_len} tokens (+${r.warmup_steps} warmup steps)`,
    `tokens/s     ${r.tokens_per_second.toFixed(1)}`,
    `step time    ${(r.step_seconds * 1000).toFixed(1)} ms`,
    `MFU          ${r.mfu !== null ? `${(r.mfu * 100).toFixed(1)}% of ${r.mfu_peak_tflops} TFLOP/s (6 x params x tokens)` : 'n/a (no peak for this device; pass --peak-tflops)'}`,
    `peak memory  ${gib(r.peak_memory_bytes)} (${r.peak_memory_kind})`,
    `final loss   ${r.final_loss.toFixed(4)}`,
    `setup        ${r.setup_seconds.toFixed(1)} s (data, model build${r.weights === 'checkpoint' ? ', checkpoint load' : ''})`,
  ].join('\n');
}
