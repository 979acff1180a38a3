// tournament local-bench [train.cpp]: exactly what a validator does with a
// submission: compile it and the official baseline in the sandbox, run both
// on the same seeds and data through the sandboxed runner, time the
// submission on the trusted clock and verify it against the reference.
import type { CommandModule } from 'yargs';
import * as path from 'path';
import { loadHparams } from '../config/hparams';
import { defaultDevice } from '../engine/model';
import { evaluateSubmission } from '../harness/evaluate';
import { gpuSlots } from '../harness/devices';
import { UserError } from '../errors';
import { BASELINE } from '../submission/source';
import { formatVerdict } from '../harness/report';
import type { Verdict } from '../harness/types';
import { defaultWorkDir } from '../util/paths';
import { ProgressLine } from '../util/progress';
import { intOption, withBenchmarkDir, withHparams, withJson } from './options';

/** The H200's measured bf16 matrix-multiply rate (docs/design.md), the MFU peak on CUDA. */
export const H200_MEASURED_BF16_TFLOPS = 790;

/** Exit status of a run whose verdict is REJECTED (the command itself worked). */
export const EXIT_REJECTED = 3;

interface Args {
  submission?: string;
  'benchmark-dir': string;
  hparams: string;
  json: boolean;
  device?: string;
  gpus?: string;
  runs?: number;
  steps?: number;
  'warmup-steps'?: number;
  'batch-size'?: number;
  seed?: number;
  'peak-tflops'?: number;
  'work-dir'?: string;
}

/** Where the runs started: with a checkpoint, what copying it cost per run (outside the clock, in the overhead). */
function startLine(v: Verdict): string {
  const secs = [...v.runs, ...v.reference_runs].map((r) => r.checkpoint_seconds).filter((s): s is number => s !== null);
  if (secs.length === 0) return '';
  return `\nstart        the benchmark's checkpoint, copied into the parameter memory in ${Math.max(...secs).toPrecision(2)} s per run at most (outside the clock)`;
}

export const localBenchCommand: CommandModule<object, Args> = {
  command: 'local-bench [submission]',
  describe: 'Compile, run and verify a submission exactly as a validator does, and report tokens/s',
  builder: (y) =>
    withJson(withHparams(withBenchmarkDir(y)))
      .positional('submission', { type: 'string', describe: 'The train.cpp to judge (default: the baseline, local_test/train.cpp)' })
      .option('device', { type: 'string', describe: 'cpu, cuda or cuda:N (default: cuda when available)' })
      .option('gpus', {
        type: 'string',
        describe: 'The devices of the evaluation, one per rank: gpus_per_evaluation of them, e.g. 0,1 (default: --device, or cuda:0.. for several ranks)',
      })
      .conflicts('gpus', 'device')
      .option('runs', { type: 'number', describe: 'Timed runs, each against a reference run (default: hparams evaluation_runs)' })
      .option('steps', { type: 'number', describe: 'Optimizer steps per run (default: hparams eval_steps)' })
      .option('warmup-steps', { type: 'number', describe: 'Untimed steps on other data first (default: hparams warmup_steps)' })
      .option('batch-size', { type: 'number', describe: 'Samples per step (default: hparams benchmark_batch_size)' })
      .option('seed', { type: 'number', describe: 'Reproduce runs: run i uses seed + i for its initialisation and data (default: fresh random seeds, as a validator draws them; the verdict prints them)' })
      .option('peak-tflops', {
        type: 'number',
        describe: `Device peak bf16 TFLOP/s for MFU, per device: several ranks count each (default: ${H200_MEASURED_BF16_TFLOPS} on CUDA, the H200's measured rate; none on CPU)`,
      })
      .option('work-dir', { type: 'string', describe: 'Scratch for compiled plugins and runs (default: a folder under the system temp dir)' })
      .epilogue(`Exit status: 0 accepted, ${EXIT_REJECTED} rejected (the reasons are printed), other non-zero values for errors.`)
      .example('$0 setup-benchmark --preset tiny && $0 local-bench', 'Judge the baseline on the tiny default (CPU)')
      .example('$0 local-bench my_train.cpp --json', 'Judge your own submission; machine-readable verdict')
      .example('$0 local-bench --gpus 0,1 --hparams two-ranks.json', 'With gpus_per_evaluation 2 in that file: two ranks, one per GPU'),
  handler: async (a) => {
    const hparams = loadHparams(a.hparams);
    let device = a.device ?? defaultDevice();
    let rankDevices: string[] | undefined;
    if (a.gpus !== undefined) {
      const slots = gpuSlots(a.gpus, hparams.gpus_per_evaluation);
      if (slots.length > 1) {
        throw new UserError(`--gpus lists ${slots.length} evaluations' worth of devices; local-bench runs one evaluation, on gpus_per_evaluation = ${hparams.gpus_per_evaluation} device(s)`, {
          hint: 'the validator (`tournament evaluate --gpus ...`) evaluates several submissions at once, one per group of devices',
        });
      }
      rankDevices = slots[0];
      device = rankDevices[0];
    }
    const submission = path.resolve(a.submission ?? BASELINE);
    // MFU's peak is the evaluation's: every rank's device counts.
    const perDevice = a['peak-tflops'] ?? (device.startsWith('cuda') ? H200_MEASURED_BF16_TFLOPS : undefined);
    const peakTflops = perDevice === undefined ? undefined : perDevice * hparams.gpus_per_evaluation;
    const progress = new ProgressLine(!a.json);
    const verdict = await evaluateSubmission({
      submission,
      benchmarkDir: a['benchmark-dir'],
      hparams,
      device,
      rankDevices,
      runs: intOption('runs', a.runs, hparams.evaluation_runs, 1),
      steps: intOption('steps', a.steps, hparams.eval_steps, 1),
      warmupSteps: intOption('warmup-steps', a['warmup-steps'], hparams.warmup_steps, 0),
      batchSize: intOption('batch-size', a['batch-size'], hparams.benchmark_batch_size, 1),
      seed: a.seed === undefined ? undefined : intOption('seed', a.seed, 0, 0),
      workDir: a['work-dir'] ?? defaultWorkDir(),
      peakTflops,
      onProgress: (t) => progress.update(t),
    });
    progress.done();
    const { parameters, ...rest } = verdict;
    process.stdout.write(
      (a.json
        ? JSON.stringify({ submission, device, parameters, mfu_peak_tflops: peakTflops ?? null, ...rest }, null, 2)
        : formatVerdict(verdict, { submission: path.relative(process.cwd(), submission) || submission, device, peakTflops }) + startLine(verdict)) + '\n',
    );
    if (!verdict.accepted) process.exitCode = EXIT_REJECTED;
  },
};
