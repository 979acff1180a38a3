// The one place the validator calls the trusted harness: every evaluation of
// every submission goes through here, with the tournament's settings.
import * as path from 'path';
import type { Hparams } from '../config/hparams';
import { compileCacheDir } from '../harness/compile';
import { evaluateSubmission } from '../harness/evaluate';
import type { EvaluateFn } from './loop';

export interface HarnessSettings {
  hparams: Hparams;
  benchmarkDir: string;
  /** The device of an evaluation given no slot (the validator's default slot). */
  device: string;
  dataDir: string;
  peakTflops?: number;
}

export function harnessEvaluator(h: HarnessSettings): EvaluateFn {
  const hp = h.hparams;
  return (file, onProgress, slot) =>
    evaluateSubmission({
      submission: file,
      benchmarkDir: h.benchmarkDir,
      hparams: hp,
      device: slot[0] ?? h.device,
      // The slot's devices, one per rank (default: the device, as many times as the ranks need).
      rankDevices: slot.length > 0 ? slot : undefined,
      runs: hp.evaluation_runs,
      steps: hp.eval_steps,
      warmupSteps: hp.warmup_steps,
      batchSize: hp.benchmark_batch_size,
      // No seed: the harness draws every run's seeds from a CSPRNG when the evaluation starts (no foresight);
      // the verdict's runs list them.
      workDir: path.join(h.dataDir, 'work'),
      // Compiled plugins survive restarts: a resumed evaluation does not compile again.
      pluginCache: compileCacheDir(path.join(h.dataDir, 'plugins')),
      // The database, fetched code and other submissions' plugins are no runner's business.
      secretPaths: [h.dataDir],
      // Per device: an evaluation on several ranks has as many devices' peak.
      peakTflops: h.peakTflops === undefined ? undefined : h.peakTflops * hp.gpus_per_evaluation,
      onProgress,
    });
}
