// The trusted evaluation of one submission: compile it and the official
// baseline, then for every run start a fresh sandboxed runner for the
// reference and for the submission on the same seed and data, and judge the
// submission's numbers (measured by the engine from its own memory) against
// the reference's. The thresholds live in hparams.verification.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import type { Hparams, Thresholds } from '../config/hparams';
import { Rng } from '../data/synthetic';
import { readTokens, TokenSet } from '../data/tokens';
import { readQwen2Config } from '../engine/config';
import { Attention, Dtype, loadAddon, native, NativeComparison, NativeEvaluator, NativeRunOutcome } from '../engine/native';
import { CONFIG_PATH, DATA_PATH, PROJECT_ROOT } from '../util/paths';
import { BASELINE } from '../submission/source';
import { UserError } from '../errors';
import { checkSubmission, compileChecked, loadPluginBuild, PluginBuild, precompiledHeader, toolchainBinds } from './compile';
import { Sandbox, SandboxJob } from './sandbox';
import { asFailureCode, type Failure, type RunReport, type Verdict } from './types';

const RUNNER = path.join(PROJECT_ROOT, 'build', 'Release', 'tournament-runner');

export interface EvaluateOptions {
  submission: string;
  benchmarkDir: string;
  hparams: Hparams;
  device: string;
  runs: number;
  steps: number;
  warmupSteps: number;
  batchSize: number;
  /**
   * Reproduces a run: run i's timed initialisation and data order use seed + i
   * (warmup's are derived from it by a hash). Without it every seed is drawn
   * from a CSPRNG when the evaluation starts, as a validator does.
   */
  seed?: number;
  /** Scratch space: per-run sandbox directories, and compiled plugins unless pluginCache is given. */
  workDir: string;
  /** Where compiled plugins are kept, by source and toolchain hash (default: workDir/plugins). */
  pluginCache?: string;
  dtype?: Dtype;
  attention?: Attention;
  /** Extra environment for the submission's runner (e.g. OMP_NUM_THREADS for noise-floor runs). */
  submissionEnv?: Record<string, string>;
  /** Extra environment for every runner, the reference's too (e.g. OMP_NUM_THREADS=1 on a shared machine). */
  runnerEnv?: Record<string, string>;
  /** The runner's address-space limit on the CPU (default 16 GiB; none on CUDA, which reserves huge ranges). */
  runnerMemoryBytes?: number;
  /** More paths no runner may see (e.g. the validator's data folder); the benchmark folder always is one. */
  secretPaths?: string[];
  /** Device peak bf16 TFLOP/s for MFU. */
  peakTflops?: number;
  onProgress?: (text: string) => void;
}

/**
 * The runs' data: a probe batch held out from everything, then per run the
 * timed rows, drawn by the run's seed, and warmup's rows, drawn by warmup's
 * own seed from the rest: warmup's data says nothing of the timed run's.
 */
export function planData(tokens: TokenSet, o: { probeRows: number; batchSize: number; steps: number; warmupSteps: number }) {
  const { samples, seqLen, ids } = tokens;
  const need = o.probeRows + (o.steps + o.warmupSteps) * o.batchSize;
  if (samples < need) {
    throw new UserError(`the benchmark data has ${samples} samples; a run needs ${need} (probe ${o.probeRows} + (steps + warmup steps) x batch)`);
  }
  const rows = (idx: number[]) => {
    const out = new Int32Array(idx.length * seqLen);
    idx.forEach((r, i) => out.set(ids.subarray(r * seqLen, (r + 1) * seqLen), i * seqLen));
    return out;
  };
  const probe = rows(Array.from({ length: o.probeRows }, (_, i) => samples - o.probeRows + i));
  /** The first `n` of `pool` in a Fisher-Yates order seeded by `seed`. */
  const draw = (pool: number[], n: number, seed: number) => {
    const rng = new Rng(seed);
    const order = [...pool];
    for (let i = 0; i < n; i++) {
      const j = i + rng.below(order.length - i);
      [order[i], order[j]] = [order[j], order[i]];
    }
    return order.slice(0, n);
  };
  const trainable = Array.from({ length: samples - o.probeRows }, (_, i) => i);
  const forRun = (seed: number, warmupSeed: number) => {
    const timedRows = draw(trainable, o.steps * o.batchSize, seed);
    const taken = new Set(timedRows);
    const warmupRows = draw(trainable.filter((r) => !taken.has(r)), o.warmupSteps * o.batchSize, warmupSeed);
    return { timed: rows(timedRows), warmup: rows(warmupRows), timedRows, warmupRows };
  };
  return { probe, forRun };
}

/** Seeds of run i: from a CSPRNG, or (to reproduce a run) base + i and a hash of it for warmup. */
export function runSeeds(base: number | undefined, i: number): { seed: number; warmupSeed: number } {
  if (base === undefined) return { seed: crypto.randomInt(0, 2 ** 48 - 1), warmupSeed: crypto.randomInt(0, 2 ** 48 - 1) };
  const seed = base + i;
  const h = crypto.createHash('sha256').update(`tournament warmup seed ${seed}`).digest();
  return { seed, warmupSeed: h.readUIntBE(0, 6) };
}

const RUNNER_DIR = path.dirname(RUNNER);

/** The sandbox job of one run, in `scratch`, seeing the runner's build folder, the plugin's folder and the toolchain `binds`. */
function runnerJob(plugin: string, scratch: string, binds: string[], cuda: boolean, memoryBytes = 16 * 2 ** 30): Omit<SandboxJob, 'command'> {
  return {
    scratchDir: scratch,
    readOnlyBinds: [RUNNER_DIR, path.dirname(plugin), ...binds],
    cuda,
    memoryBytes,
    // Threads count too: libtorch's pools need a few hundred on a large host.
    maxProcesses: 4096,
    fileBytes: 64 * 2 ** 20,
  };
}

/** What no runner may see: credentials and the validator's data, wherever they are. */
function secretPaths(o: EvaluateOptions): string[] {
  const home = os.homedir();
  return [
    o.benchmarkDir,
    ...(o.secretPaths ?? []),
    path.join(PROJECT_ROOT, 'benchmark'),
    path.join(PROJECT_ROOT, '.env'),
    path.join(PROJECT_ROOT, '.git'),
    path.join(PROJECT_ROOT, '.local_commitments'),
    path.join(PROJECT_ROOT, '.local_storage'),
    path.join(home, '.bittensor'),
    path.join(home, '.aws'),
    path.join(home, '.cache', 'huggingface'),
  ];
}

const inFlight = new Map<string, Promise<{ ok: true; pluginPath: string } | { ok: false; message: string }>>();

const pchInFlight = new Map<string, Promise<string | undefined>>();

/** precompiledHeader(), made once even when evaluations in this process share a cache. */
function precompiledHeaderOnce(cacheDir: string, build: PluginBuild, sandbox: Sandbox): Promise<string | undefined> {
  let job = pchInFlight.get(cacheDir);
  if (!job) {
    job = precompiledHeader(cacheDir, build, sandbox).finally(() => pchInFlight.delete(cacheDir));
    pchInFlight.set(cacheDir, job);
  }
  return job;
}

/** Compiles `file` into cacheDir/<sha256 of source and toolchain>/, reusing an earlier build. */
async function compileCached(file: string, cacheDir: string, build: PluginBuild, maxCodeBytes: number, sandbox: Sandbox, pch: string | undefined): Promise<{ ok: true; pluginPath: string } | { ok: false; message: string }> {
  const checked = checkSubmission(file, maxCodeBytes);
  if (!checked.ok) return checked;
  const key = crypto.createHash('sha256').update(checked.source.sha256).update(JSON.stringify(build)).update(pch ?? '').digest('hex').slice(0, 16);
  const dir = path.join(cacheDir, key);
  const plugin = path.join(dir, 'plugin.so');
  if (fs.existsSync(plugin)) return { ok: true, pluginPath: plugin };
  const pending = inFlight.get(dir);
  if (pending) return pending;
  const job = (async () => {
    const tmp = `${dir}.tmp-${process.pid}`;
    fs.rmSync(tmp, { recursive: true, force: true });
    const r = await compileChecked(checked.source, { workDir: tmp, build, sandbox, pch });
    if (!r.ok) return r;
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
    return { ok: true as const, pluginPath: plugin };
  })();
  inFlight.set(dir, job);
  try {
    return await job;
  } finally {
    inFlight.delete(dir);
  }
}

/**
 * How far one row of the last batch stands out: per row, the run's loss minus
 * the reference's, less the median of those differences (a shift common to
 * every row is the probe check's business); the largest in absolute value.
 */
export function rowLossDeviation(rows: number[], refRows: number[]): number {
  if (rows.length !== refRows.length || rows.length === 0) return Infinity;
  const d = rows.map((x, i) => x - refRows[i]);
  const m = median(d);
  const dev = Math.max(...d.map((x) => Math.abs(x - m)));
  return Number.isNaN(dev) ? Infinity : dev;
}

/** The verdict's checks on one completed run against the reference: every failure it shows. */
export function judge(v: Thresholds, outcome: NativeRunOutcome, ref: NativeRunOutcome, cmp: NativeComparison, expectedTokens: number): Failure[] {
  const failures: Failure[] = [];
  if (outcome.reportedTokens !== expectedTokens) {
    failures.push({ code: 'tokens', message: `inner_steps reported ${outcome.reportedTokens} tokens; the run served ${expectedTokens}` });
  }
  if (cmp.changedAfterKill) {
    failures.push({ code: 'late_write', message: 'the parameter or logits memory changed after the runner was killed at DONE: something of the run outlived it' });
  }
  const fmt = (x: number) => (Number.isFinite(x) ? x.toPrecision(3) : String(x));
  const dProbe = Math.abs(outcome.probeLoss - ref.probeLoss);
  if (!(dProbe <= v.probe_loss_abs)) {
    failures.push({
      code: 'probe_loss',
      message: `the final weights' probe loss is ${fmt(outcome.probeLoss)}, the reference's ${fmt(ref.probeLoss)}: off by ${fmt(dProbe)} (allowed ${v.probe_loss_abs})`,
    });
  }
  const dRow = rowLossDeviation(outcome.lastBatchRowLosses, ref.lastBatchRowLosses);
  if (!(dRow <= v.row_loss_abs)) {
    failures.push({
      code: 'row_loss',
      message: `on a row of the last batch the final weights' loss stands out from the reference's by ${fmt(dRow)} (allowed ${v.row_loss_abs}): a row left untrained`,
    });
  }
  if (!(cmp.logitsRelError <= v.logits_rel_error)) {
    failures.push({ code: 'logits', message: `the returned logits differ from the reference's by ${fmt(cmp.logitsRelError)} relative (allowed ${v.logits_rel_error})` });
  }
  if (cmp.frozen.length > 0) {
    const names = cmp.frozen.slice(0, 4).join(', ') + (cmp.frozen.length > 4 ? `, ... (${cmp.frozen.length} in all)` : '');
    failures.push({ code: 'frozen', message: `${cmp.frozen.length} parameter tensor(s) never changed though the reference updated them: ${names}` });
  }
  if (!(cmp.changedShare >= v.min_changed_share_ratio * cmp.referenceChangedShare)) {
    failures.push({ code: 'changed_share', message: `${(cmp.changedShare * 100).toFixed(1)}% of the parameters changed, the reference changed ${(cmp.referenceChangedShare * 100).toFixed(1)}% (at least ${v.min_changed_share_ratio} of that required)` });
  }
  if (!(cmp.updateRelError <= v.update_rel_error)) {
    failures.push({ code: 'update_error', message: `the weight update differs from the reference's by ${fmt(cmp.updateRelError)} relative (allowed ${v.update_rel_error})` });
  }
  return failures;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

export async function evaluateSubmission(o: EvaluateOptions): Promise<Verdict> {
  const progress = o.onProgress ?? (() => {});
  // Timing capture (issue 13): wall-clock seconds of the evaluation's own phases, summed over runs.
  const t0 = Date.now();
  const timings: Record<string, number> = {};
  const clocked = async <T>(name: string, f: () => Promise<T>): Promise<T> => {
    const s = Date.now();
    try {
      return await f();
    } finally {
      timings[name] = (timings[name] ?? 0) + (Date.now() - s) / 1000;
    }
  };
  const addon = loadAddon();
  const box = Sandbox.open({ secrets: secretPaths(o) });
  const build = loadPluginBuild();
  const cuda = o.device.startsWith('cuda');
  const config = readQwen2Config(path.join(o.benchmarkDir, CONFIG_PATH));
  const tokens = readTokens(path.join(o.benchmarkDir, DATA_PATH));
  for (let i = 0; i < tokens.ids.length; i++) {
    if (tokens.ids[i] >= config.vocab_size) throw new UserError(`benchmark data: token id ${tokens.ids[i]} is outside the vocabulary of ${config.vocab_size}`);
  }
  const data = planData(tokens, { probeRows: o.hparams.verification.probe_rows, batchSize: o.batchSize, steps: o.steps, warmupSteps: o.warmupSteps });
  fs.mkdirSync(o.workDir, { recursive: true });
  const workDir = fs.realpathSync(o.workDir);

  progress('compiling the baseline and the submission');
  const cache = path.resolve(o.pluginCache ?? path.join(workDir, 'plugins'));
  fs.mkdirSync(cache, { recursive: true });
  const [ref, sub] = await clocked('compile', async () => {
    const pch = await precompiledHeaderOnce(cache, build, box);
    return Promise.all([BASELINE, o.submission].map((f) => compileCached(f, cache, build, o.hparams.max_code_bytes, box, pch)));
  });
  if (!ref.ok) throw new UserError(`the official baseline does not compile here: ${ref.message}`);
  const binds = toolchainBinds(build);
  const user = box.user(runnerJob(sub.ok ? sub.pluginPath : ref.pluginPath, path.join(workDir, 'run-'), binds, cuda));
  const sandbox = { bwrap: box.bwrap, uid: user.uid, root_because: user.rootBecause ?? null };
  const numParameters = addon.numParameters(config);
  const empty: Verdict = { accepted: false, parameters: numParameters, reasons: [], runs: [], reference_runs: [], tokens_per_second: null, mfu: null, sandbox };
  if (!sub.ok) return { ...empty, reasons: [`compile: ${sub.message}`] };

  const evaluator: NativeEvaluator = await clocked('evaluator_setup', async () => native('setting up the evaluation', () => new addon.Evaluator({
    config,
    device: o.device,
    dtype: o.dtype ?? 'bfloat16',
    attention: o.attention ?? 'auto',
    batchSize: o.batchSize,
    seqLen: tokens.seqLen,
    steps: o.steps,
    warmupSteps: o.warmupSteps,
    optimizer: o.hparams.optimizer,
    probe: data.probe,
    timeouts: o.hparams.runner_timeouts,
  })));
  // The loader path is the one piece of the host environment a runner needs (GPU drivers live there on some hosts).
  const hostEnv: Record<string, string> = process.env.LD_LIBRARY_PATH ? { LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH } : {};
  const expectedTokens = o.steps * o.batchSize * tokens.seqLen;
  const thresholds = cuda ? o.hparams.verification.cuda : o.hparams.verification.cpu;
  const runs: RunReport[] = [];
  const referenceRuns: RunReport[] = [];

  try {
    for (let i = 0; i < o.runs; i++) {
      const { seed, warmupSeed } = runSeeds(o.seed, i);
      const { timed, warmup } = data.forRun(seed, warmupSeed);
      const runOnce = async (plugin: string, who: string, extraEnv: Record<string, string>) => {
        const scratch = fs.mkdtempSync(path.join(workDir, 'run-'));
        try {
          const job = runnerJob(plugin, scratch, binds, cuda, o.runnerMemoryBytes);
          box.prepareScratch(job);
          return await clocked(`${who}_runs`, () => native(`${who} run`, () =>
            evaluator.run(
              {
                argv: box.argv({ ...job, command: [RUNNER, plugin], env: { ...hostEnv, ...o.runnerEnv, ...extraEnv }, bwrapArgs: ['--info-fd', String(addon.runnerInfoFd)] }),
                seed,
                warmupSeed,
                seqLen: tokens.seqLen,
                warmupTokens: warmup,
                timedTokens: timed,
                logPath: path.join(scratch, 'runner.log'),
                measureInitialProbe: who === 'reference',
              },
              (phase) => progress(`run ${i + 1}/${o.runs}: ${who}: ${phase}`),
            ),
          ));
        } finally {
          fs.rmSync(scratch, { recursive: true, force: true });
        }
      };

      const r = await runOnce(ref.pluginPath, 'reference', {});
      referenceRuns.push(report(seed, r, [], null, expectedTokens, o.steps));
      if (!r.completed || r.reportedTokens !== expectedTokens) {
        throw new UserError(`the official baseline failed its run on this machine (${r.failureCode}: ${r.failureMessage || `reported ${r.reportedTokens} tokens`}); the evaluation cannot be judged`);
      }
      const refId = await clocked('keep_reference', async () => evaluator.keepLast());
      try {
        const s = await runOnce(sub.pluginPath, 'submission', o.submissionEnv ?? {});
        if (!s.completed) {
          runs.push(report(seed, s, [{ code: asFailureCode(s.failureCode), message: s.failureMessage }], null, expectedTokens, o.steps));
          continue;
        }
        progress(`run ${i + 1}/${o.runs}: comparing with the reference`);
        const cmp = await clocked('compare', () => native('comparing with the reference', () => evaluator.compareLastWith(refId, seed)));
        const failures = judge(thresholds, s, r, cmp, expectedTokens);
        runs.push(report(seed, s, failures, { cmp, ref: r }, expectedTokens, o.steps));
      } finally {
        evaluator.release(refId);
      }
    }
  } finally {
    await clocked('close', async () => evaluator.close()); // the device memory goes now, not when the garbage collector runs
  }
  timings.total = (Date.now() - t0) / 1000;

  return { ...score(runs, o.runs, numParameters, o.peakTflops), runs, reference_runs: referenceRuns, sandbox, timings };
}

/**
 * The score of a submission's runs: accepted only when all `wanted` runs ran
 * and every one passed; then tokens/s is the median over the runs (each from
 * the trusted clock) and MFU is 6 x parameters x tokens/s over the peak.
 */
export function score(runs: RunReport[], wanted: number, parameters: number, peakTflops?: number) {
  const reasons = runs.flatMap((r, i) => r.failures.map((f) => `run ${i + 1}: ${f.code}: ${f.message}`));
  const accepted = reasons.length === 0 && runs.length === wanted && runs.every((r) => r.ok);
  const tps = accepted ? median(runs.map((r) => r.tokens_per_second as number)) : null;
  const mfu = tps !== null && peakTflops ? (6 * parameters * tps) / (peakTflops * 1e12) : null;
  return { accepted, parameters, reasons, tokens_per_second: tps, mfu };
}

function report(
  seed: number,
  r: NativeRunOutcome,
  failures: Failure[],
  c: { cmp: NativeComparison; ref: NativeRunOutcome } | null,
  expectedTokens: number,
  steps: number,
): RunReport {
  return {
    seed,
    ok: r.completed && failures.length === 0,
    failures,
    seconds: r.completed ? r.seconds : null,
    tokens: r.completed ? expectedTokens : 0,
    tokens_per_second: r.completed ? expectedTokens / r.seconds : null,
    overhead_seconds: r.overheadSeconds,
    phase_seconds: r.phaseSeconds,
    step_seconds: r.completed ? r.seconds / steps : null,
    reported_loss: r.completed ? r.reportedLoss : null,
    reported_peak_memory_bytes: r.completed ? r.reportedPeakMemory : null,
    checks: c && {
      probe_loss: r.probeLoss,
      reference_probe_loss: c.ref.probeLoss,
      initial_probe_loss: c.ref.initialProbeLoss,
      row_loss_deviation: rowLossDeviation(r.lastBatchRowLosses, c.ref.lastBatchRowLosses),
      logits_rel_error: c.cmp.logitsRelError,
      update_rel_error: c.cmp.updateRelError,
      max_tensor_rel_error: c.cmp.maxTensorRelError,
      changed_share: c.cmp.changedShare,
      reference_changed_share: c.cmp.referenceChangedShare,
      frozen_tensors: c.cmp.frozen,
    },
  };
}
