// The one place the validator calls the trusted harness: every evaluation of
// every submission goes through here, with the tournament's settings.
import * as crypto from 'crypto';
import * as path from 'path';
import type { Hparams } from '../config/hparams';
import { evaluateSubmission } from '../harness/evaluate';
import type { EvaluateFn } from './loop';

export interface HarnessSettings {
  hparams: Hparams;
  benchmarkDir: string;
  device: string;
  dataDir: string;
  peakTflops?: number;
}

export function harnessEvaluator(h: HarnessSettings): EvaluateFn {
  const hp = h.hparams;
  return (file, onProgress) =>
    evaluateSubmission({
      submission: file,
      benchmarkDir: h.benchmarkDir,
      hparams: hp,
      device: h.device,
      runs: hp.evaluation_runs,
      steps: hp.eval_steps,
      warmupSteps: hp.warmup_steps,
      batchSize: hp.benchmark_batch_size,
      // TODO(harness seeds): drop this once evaluateSubmission draws its seeds from a CSPRNG itself
      // (the lead's change making `seed` optional); the verdict's runs list the seeds used either way.
      seed: crypto.randomInt(2 ** 31 - 1024),
      workDir: path.join(h.dataDir, 'work'),
      // Compiled plugins survive restarts: a resumed evaluation does not compile again.
      pluginCache: path.join(h.dataDir, 'plugins'),
      peakTflops: h.peakTflops,
      onProgress,
    });
}
