// tournament calibrate: measures the verification noise floor on this device
// and benchmark, says whether the thresholds in force hold here, recommends
// thresholds, and with --write stores them with their basis and a record of
// the calibration in the hparams file (src/harness/calibrate.ts).
import type { CommandModule } from 'yargs';
import * as fs from 'fs';
import * as path from 'path';
import { loadHparams, type Hparams } from '../config/hparams';
import { defaultDevice } from '../engine/model';
import { UserError } from '../errors';
import { calibrate, DEFAULT_CASES, mergeCalibrations, writeCalibration, type CalibrationResult } from '../harness/calibrate';
import { formatCalibration } from '../harness/report';
import { defaultWorkDir } from '../util/paths';
import { ProgressLine } from '../util/progress';
import { EXIT_REJECTED } from './local-bench';
import { intOption, withBenchmarkDir, withHparams, withJson } from './options';

interface Args {
  'benchmark-dir': string;
  hparams: string;
  json: boolean;
  device?: string;
  seed?: number;
  'seed-count': number;
  steps?: number;
  'warmup-steps'?: number;
  cases?: string;
  threads?: number;
  write: boolean;
  'work-dir'?: string;
  merge?: string[];
}

export const calibrateCommand: CommandModule<object, Args> = {
  command: 'calibrate',
  describe: 'Measure the verification noise floor on this device; check the thresholds in force; recommend (and --write) thresholds',
  builder: (y) =>
    withJson(withHparams(withBenchmarkDir(y)))
      .option('device', { type: 'string', describe: 'cpu, cuda or cuda:N (default: cuda when available)' })
      .option('seed-count', { type: 'number', default: 3, describe: 'Seeds (runs per case); each seed gets one reference run that every case is compared with' })
      .option('seed', { type: 'number', describe: 'First seed: run i uses seed + i (default: fresh random seeds, printed with the results)' })
      .option('steps', { type: 'number', describe: 'Optimizer steps per run (default: hparams eval_steps, what validators run)' })
      .option('warmup-steps', { type: 'number', describe: 'Untimed steps first (default: hparams warmup_steps)' })
      .option('cases', {
        type: 'string',
        describe:
          'Comma-separated cases: baseline, baseline-1-thread, drop:every:K, drop:last:K (K rows of every batch / of the last batch untrained), ' +
          'a plugin in local_test/calibration/ by name, or a .cpp path (a cheat if its header says "// expect: <codes>", else honest)',
        defaultDescription: 'baseline, the 4 honest_* variants, skip_last_step, freeze_layers, stale_logits, drop_early_rows, drop:last:1,2,4,8, drop:every:1,2,4',
      })
      .option('threads', { type: 'number', describe: 'OMP_NUM_THREADS for every runner (1 keeps a shared CPU machine from oversubscribing)' })
      .option('write', { type: 'boolean', default: false, describe: 'Store the recommended thresholds, their basis and the calibration record in the hparams file (verification.cpu or .cuda)' })
      .option('work-dir', { type: 'string', describe: 'Scratch for compiled plugins and runs (default: a folder under the system temp dir)' })
      .option('merge', {
        type: 'string',
        array: true,
        describe: 'Run nothing: judge earlier calibrations together (files that `calibrate --json` printed, of one device and benchmark), against the thresholds in force, with one recommendation over all their seeds',
      })
      .epilogue(
        [
          'The thresholds hold when every honest case stays within half of every threshold (a 2x margin) in every run and every cheat is',
          'rejected in every run. The recommendation sets each check between 2x the worst honest run and the closest cheat (their geometric',
          'middle); --write refuses when no thresholds separate them. `tournament evaluate` refuses thresholds never calibrated on its kind of',
          `device. Exit status: 0 when the thresholds in force hold (or --write stored new ones), ${EXIT_REJECTED} when they do not, other non-zero values for errors.`,
        ].join(' '),
      )
      .example('$0 calibrate --device cuda --benchmark-dir /data/bench --write', 'Calibrate a GPU validator and store the thresholds')
      .example('$0 calibrate --seed-count 1 --cases baseline,drop:last:1 --json', 'A quick look on the CPU default')
      .example('$0 calibrate --merge cal-904.json cal-905.json --write', 'Thresholds from two GPU calls\' seeds together'),
  handler: async (a) => {
    const hparams = loadHparams(a.hparams);
    if (a.write && !fs.existsSync(a.hparams)) throw new UserError(`--write: ${a.hparams} does not exist`);
    const argv = process.argv.slice(2).map((s) => (/^[\w./:,=@-]+$/.test(s) ? s : JSON.stringify(s)));
    const command = `tournament ${argv.join(' ')}`;
    const result = a.merge ? merged(a, hparams, command) : await measured(a, hparams, command);
    // Print first: when --write refuses, the measurements still show why.
    const print = (written: boolean) =>
      process.stdout.write((a.json ? JSON.stringify({ ...result, hparams_file: path.resolve(a.hparams), written }, null, 2) : formatCalibration(result, { hparamsFile: a.hparams, written })) + '\n');
    if (a.write && result.recommended.problems.length === 0) {
      writeCalibration(a.hparams, result);
      print(true);
      return;
    }
    print(false);
    if (a.write) writeCalibration(a.hparams, result); // refuses, saying why
    if (!result.holds) process.exitCode = EXIT_REJECTED;
  },
};

function merged(a: Args, hparams: Hparams, command: string): CalibrationResult {
  const given = (['cases', 'seed', 'steps', 'warmup-steps', 'threads', 'device', 'work-dir'] as const).filter((k) => a[k] !== undefined);
  if (given.length) throw new UserError(`--merge runs nothing: --${given[0]} does not apply`, { hint: 'the device, benchmark, seeds and cases are those of the merged files' });
  const files = (a.merge ?? []).map((file) => {
    if (!fs.existsSync(file)) throw new UserError(`--merge: ${file} does not exist`);
    try {
      return { file, result: JSON.parse(fs.readFileSync(file, 'utf8')) as CalibrationResult };
    } catch (e) {
      throw new UserError(`--merge: ${file} is not JSON (${(e as Error).message})`, { hint: 'merge what `tournament calibrate --json` printed' });
    }
  });
  return mergeCalibrations(files, hparams, command);
}

async function measured(a: Args, hparams: Hparams, command: string): Promise<CalibrationResult> {
  const device = a.device ?? defaultDevice();
  const cases = a.cases === undefined ? DEFAULT_CASES : a.cases.split(',').map((s) => s.trim()).filter(Boolean);
  if (cases.length === 0) throw new UserError('--cases names no case');
  if (a.threads !== undefined) intOption('threads', a.threads, 1, 1);
  const progress = new ProgressLine(!a.json);
  const result = await calibrate({
    cases,
    command,
    benchmarkDir: a['benchmark-dir'],
    hparams,
    device,
    runs: intOption('seed-count', a['seed-count'], 3, 1),
    seed: a.seed === undefined ? undefined : intOption('seed', a.seed, 0, 0),
    steps: intOption('steps', a.steps, hparams.eval_steps, 1),
    warmupSteps: intOption('warmup-steps', a['warmup-steps'], hparams.warmup_steps, 0),
    batchSize: hparams.benchmark_batch_size,
    workDir: a['work-dir'] ?? defaultWorkDir(),
    runnerEnv: a.threads === undefined ? {} : { OMP_NUM_THREADS: String(a.threads) },
    onProgress: (t) => progress.update(t),
  });
  progress.done();
  return result;
}
