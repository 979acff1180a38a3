// The trusted evaluation of one submission: compile it and the official
// baseline, then for every run start a fresh sandboxed runner for the
// reference and for the submission on the same seed and data, and judge the
// submission's numbers (measured by the engine from its own memory) against
// the reference's. The thresholds live in hparams.verification.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { recordsLayers, recordsTrajectory, thresholdValues, type Hparams, type Thresholds } from '../config/hparams';
import { Rng } from '../data/synthetic';
import { readTokens, TokenSet } from '../data/tokens';
import { readQwen2Config } from '../engine/config';
import { openEvaluator } from '../engine/evaluator';
import { Attention, Dtype, loadAddon, native, NativeComparison, NativeRunOutcome } from '../engine/native';
import { CONFIG_PATH, DATA_PATH, PROJECT_ROOT } from '../util/paths';
import { BASELINE } from '../submission/source';
import { UserError } from '../errors';
import { checkSubmission, compileCacheDir, compileCached, CompileResult, loadPluginBuild, PluginBuild, toolchainBinds } from './compile';
import { measureRun } from './margin';
import { Sandbox, SandboxJob } from './sandbox';
import { defaultRankDevices } from './devices';
import { asFailureCode, type Failure, type RunReport, type Verdict } from './types';

const RUNNER = path.join(PROJECT_ROOT, 'build', 'Release', 'tournament-runner');

export interface EvaluateOptions {
  submission: string;
  benchmarkDir: string;
  hparams: Hparams;
  device: string;
  /**
   * (multi-rank) One device per rank, hparams.gpus_per_evaluation of them, rank 0's first (an evaluation slot,
   * src/harness/devices.ts). Default: defaultRankDevices(device, gpus_per_evaluation).
   */
  rankDevices?: string[];
  runs: number;
  steps: number;
  warmupSteps: number;
  batchSize: number;
  /**
   * Reproduces a run: run i's timed initialisation and data order use seed + i
   * (warmup's seed is always a CSPRNG's). Without it every seed is drawn
   * from a CSPRNG when the evaluation starts, as a validator does.
   */
  seed?: number;
  /** Scratch space: per-run sandbox directories, and compiled plugins unless pluginCache is given. */
  workDir: string;
  /** Where compiled plugins are kept, by source and toolchain hash (default: compileCacheDir(workDir/plugins)). */
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
  /** Relative perturbation of a checkpoint start per run (default: the engine's; 0 for measurements without it). */
  checkpointPerturbation?: number;
  /**
   * Record every timed step and the loss head, and repeat the steps after each
   * run (the trajectory and the loss head's record). Default: where the
   * device's thresholds judge them (recordsTrajectory); calibrations always
   * record, since they measure the readings those thresholds come from.
   */
  recordTrajectory?: boolean;
  /**
   * With the trajectory, record every layer too (the layers' record). Default:
   * where the device's thresholds judge it (recordsLayers).
   */
  recordLayers?: boolean;
  onProgress?: (text: string) => void;
}

/**
 * The runs' data: a probe batch drawn by the evaluation's `probeSeed` and held
 * out from everything (the data set is public, so a fixed probe would be one
 * every miner knows and could train towards), then per run the timed rows,
 * drawn by the run's seed, and warmup's rows, drawn by warmup's own seed from
 * the rest: warmup's data says nothing of the timed run's.
 */
export function planData(tokens: TokenSet, o: { probeRows: number; probeSeed: number; batchSize: number; steps: number; warmupSteps: number }) {
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
  const all = Array.from({ length: samples }, (_, i) => i);
  const probeRows = draw(all, o.probeRows, o.probeSeed);
  const held = new Set(probeRows);
  const trainable = all.filter((r) => !held.has(r));
  const probe = rows(probeRows);
  const forRun = (seed: number, warmupSeed: number) => {
    const timedRows = draw(trainable, o.steps * o.batchSize, seed);
    const taken = new Set(timedRows);
    const warmupRows = draw(trainable.filter((r) => !taken.has(r)), o.warmupSteps * o.batchSize, warmupSeed);
    return { timed: rows(timedRows), warmup: rows(warmupRows), timedRows, warmupRows };
  };
  return { probe, forRun };
}

/** The probe's seed of an evaluation: from a CSPRNG, or (to reproduce one) a hash of the base seed. */
export function probeSeed(base: number | undefined): number {
  if (base === undefined) return crypto.randomInt(0, 2 ** 48 - 1);
  return crypto.createHash('sha256').update(`tournament probe seed ${base}`).digest().readUIntBE(0, 6);
}

/**
 * Seeds of run i: the timed run's from a CSPRNG, or (to reproduce a run)
 * base + i; warmup's always from a CSPRNG. Warmup's start is handed to the
 * plugin before the clock runs, so it must say nothing of the timed seed: a
 * warmup seed derived from it (a public hash, once) let a plugin find the
 * timed seed from warmup's weights and train the timed run before the clock
 * started (the thirteenth attack pass). Nothing of warmup is verified, so the
 * timed run reproduces without it.
 */
export function runSeeds(base: number | undefined, i: number): { seed: number; warmupSeed: number } {
  const warmupSeed = crypto.randomInt(0, 2 ** 48 - 1);
  return { seed: base === undefined ? crypto.randomInt(0, 2 ** 48 - 1) : base + i, warmupSeed };
}

const RUNNER_DIR = path.dirname(RUNNER);

/** The sandbox's command: one runner, or with several ranks one that starts a runner per rank (protocol.h). */
function runnerCommand(plugin: string, ranks: number): string[] {
  return ranks > 1 ? [RUNNER, '--ranks', String(ranks), plugin] : [RUNNER, plugin];
}

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
function secretPaths(o: { benchmarkDir: string; secretPaths?: string[] }): string[] {
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

/** `f` over `items`, at most `limit` at a time, started in the items' order. */
function inOrder<T, R>(items: T[], limit: number, f: (x: T) => Promise<R>): Promise<R>[] {
  let running = 0;
  const waiting: (() => void)[] = [];
  return items.map(async (x) => {
    if (running >= limit) await new Promise<void>((r) => waiting.push(r));
    running++;
    try {
      return await f(x);
    } finally {
      running--;
      waiting.shift()?.();
    }
  });
}

/**
 * What the final weights' loss on the timed batches says about tokens left
 * untrained. `cells` holds, batch by batch, row by row, the loss of each run
 * of consecutive positions (the engine's cells); `ref` the reference's. Per
 * batch, d = cell loss - reference cell loss:
 * - `cell`: how far a cell stands above the batch's lower quartile of d, the
 *   largest over batches. A skipped cell keeps a loss its batch's training
 *   would have lowered; the lower quartile is a centre a cheat cannot move
 *   without leaving most of the batch untrained, and then `shift` sees it.
 * - `shift`: the mean of d, the largest over batches: a shortfall spread
 *   evenly over every cell of a batch. One-sided: training more than the
 *   reference is not a way to skip work.
 * Missing, mismatched or NaN values give Infinity (a failed check).
 */
export function cellLossChecks(cells: number[], ref: number[], batches: number): { cell: number; shift: number } {
  const bad = { cell: Infinity, shift: Infinity };
  if (cells.length !== ref.length || cells.length === 0 || batches < 1 || cells.length % batches !== 0) return bad;
  const per = cells.length / batches;
  let cell = -Infinity;
  let shift = -Infinity;
  for (let b = 0; b < batches; b++) {
    const d = cells.slice(b * per, (b + 1) * per).map((x, i) => x - ref[b * per + i]);
    if (d.some((x) => !Number.isFinite(x))) return bad;
    const q = quantile(d, 0.25);
    cell = Math.max(cell, ...d.map((x) => x - q));
    shift = Math.max(shift, d.reduce((a, x) => a + x, 0) / d.length);
  }
  return { cell, shift };
}

/** The verdict's checks on one completed run against the reference: every failure it shows. */
export function judge(v: Thresholds, outcome: NativeRunOutcome, ref: NativeRunOutcome, cmp: NativeComparison, expectedTokens: number, batches: number): Failure[] {
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
  const cells = cellLossChecks(outcome.cellLosses, ref.cellLosses, batches);
  if (!(cells.cell <= v.cell_loss_abs)) {
    failures.push({
      code: 'cell_loss',
      message: `on part of a row of a timed batch the final weights' loss stands above the reference's by ${fmt(cells.cell)} more than on the batch's lower quartile (allowed ${v.cell_loss_abs}): tokens left untrained`,
    });
  }
  if (!(cells.shift <= v.batch_loss_abs)) {
    failures.push({
      code: 'batch_loss',
      message: `on a timed batch the final weights' mean loss is ${fmt(cells.shift)} above the reference's (allowed ${v.batch_loss_abs}): part of every row left untrained`,
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
  const unrecorded = outcome.trajectory.findIndex((t) => !t.recorded);
  if (unrecorded >= 0) {
    failures.push({
      code: 'unrecorded',
      message: `the weights after timed step ${unrecorded} of ${outcome.trajectory.length} were not recorded (or are not finite): inner_steps must call data.step_done() after each optimizer step, once the parameters hold its result (train_api.h)`,
    });
  }
  const far = outcome.trajectory.findIndex((t) => t.recorded && t.outOfReach > 0);
  if (unrecorded < 0 && far >= 0) {
    failures.push({
      code: 'unreachable',
      message: `${outcome.trajectory[far].outOfReach} weight(s) of timed step ${far + 1}'s recorded result moved further from the weights recorded before it than any AdamW step can: the recorded weights are not the run's training`,
    });
  }
  // The trajectory's judged kinds: one limit each (null: not applied on this kind of device).
  type Steps = { step: number; kind: string; error: number };
  // The message for a group of kinds pooled over the layers (the MLP's, the attention's).
  const pooledSteps = (group: string) => (w: Steps, limit: number) =>
    `at timed step ${w.step}, ${w.kind}'s step, pooled over the layers, lands ${fmt(w.error)} units of rounding-size gradient noise from the judge's own AdamW step at the weights recorded before it (allowed ${limit} for ${group}): that step's gradients were not its batch's`;
  const judgedSteps: [RegExp, number | null, (w: Steps, limit: number) => string][] = [
    [HEAD_KIND, v.head_trajectory_excess, (w, limit) => `at timed step ${w.step}, lm_head's step lands ${fmt(w.error)} units of rounding-size gradient noise from the judge's own AdamW step of that batch's gradient at the weights recorded before it (allowed ${limit}): that step's lm_head gradient was not its batch's`],
    [MLP_KINDS, v.mlp_trajectory_excess, pooledSteps('the MLP\'s kinds')],
    [ATTENTION_KINDS, v.attention_trajectory_excess, pooledSteps('the attention\'s kinds')],
  ];
  for (const [among, limit, message] of judgedSteps) {
    const w = worstTrajectory(outcome, among);
    if (unrecorded < 0 && w && limit !== null && !(w.error <= limit)) failures.push({ code: 'trajectory', message: message(w, limit) });
  }
  // The loss head's record (train_api.h, version 5), on the steps whose start was recorded.
  const missing = outcome.trajectory.findIndex((t) => t.recorded && t.headRowsMissing > 0);
  const record = worstHeadRecord(outcome);
  if (unrecorded < 0 && missing >= 0) {
    failures.push({
      code: 'loss_head',
      message: `${outcome.trajectory[missing].headRowsMissing} row(s) of timed step ${missing + 1}'s batch have no finite record of the loss head's input and its gradient: a submission that does not get that input from model->hidden_states must call data.record_loss_head() in every step (train_api.h)`,
    });
  } else if (unrecorded < 0 && record) {
    if (v.head_input_error !== null && !(record.input.error <= v.head_input_error)) {
      failures.push({ code: 'loss_head', message: `at timed step ${record.input.step}, the loss head's recorded input differs from the judge's own forward from the weights recorded before it by ${fmt(record.input.error)} relative (allowed ${v.head_input_error}): it is not the input those weights give` });
    }
    if (v.head_grad_error !== null && !(record.grad.error <= v.head_grad_error)) {
      failures.push({ code: 'loss_head', message: `at timed step ${record.grad.step}, the loss head's recorded gradient differs from the nearer of the judge's own two at the recorded input (the reference's arithmetic, float32 throughout) by ${fmt(record.grad.error)} relative (allowed ${v.head_grad_error}): that gradient was not computed from its input` });
    }
  }
  // The layers' record (train_api.h, version 6), where taken, on the steps whose start was recorded.
  const layersMissing = outcome.trajectory.findIndex((t) => t.recorded && (t.layerRowsMissing ?? 0) > 0);
  const layerRecord = worstLayerRecord(outcome);
  if (unrecorded < 0 && layersMissing >= 0) {
    failures.push({
      code: 'layer_record',
      message: `${outcome.trajectory[layersMissing].layerRowsMissing} (layer, row) pair(s) of timed step ${layersMissing + 1} have no finite record of the layer's residual, MLP output and their gradients: a submission that does not run its layers through model->hidden_states must call data.record_layer() and data.record_layer_grad() for every layer in every step (train_api.h)`,
    });
  } else if (unrecorded < 0 && layerRecord) {
    const links = (what: string, w: StepError, limit: number) =>
      `at timed step ${w.step}, a value of the layers' recorded ${what} differs from the judge's own computation of it from the record's value before it, with the weights recorded before the step, by ${fmt(w.error)} relative on its worst row (allowed ${limit}): it is not what that layer computes`;
    if (v.layer_forward_error !== null && !(layerRecord.forward.error <= v.layer_forward_error)) {
      failures.push({ code: 'layer_record', message: links('forward', layerRecord.forward, v.layer_forward_error) });
    }
    if (v.layer_backward_error !== null && !(layerRecord.backward.error <= v.layer_backward_error)) {
      failures.push({ code: 'layer_record', message: links('backward', layerRecord.backward, v.layer_backward_error) });
    }
    if (v.layer_small_term_share !== null && !(layerRecord.smallTerms.error <= v.layer_small_term_share)) {
      failures.push({ code: 'layer_record', message: `at timed step ${layerRecord.smallTerms.step}, the layers' record lacks ${fmt(layerRecord.smallTerms.error)} of an MLP product's small-term part (the part each position's smallest entries of its operand make; allowed ${v.layer_small_term_share}): those terms were left out` });
    }
    if (v.layer_small_term_energy !== null && !(layerRecord.smallEnergy.error <= v.layer_small_term_energy)) {
      failures.push({ code: 'layer_record', message: `at timed step ${layerRecord.smallEnergy.step}, an MLP link's error in the layers' record has ${fmt(layerRecord.smallEnergy.error)} relative of the value in excess along its small terms' weight vectors (allowed ${v.layer_small_term_energy}; rounding lands evenly or on the large terms): small terms were dropped or sampled` });
    }
    if (v.mlp_grad_small_term_excess !== null && !(layerRecord.gradSmallTerms.error <= v.mlp_grad_small_term_excess)) {
      failures.push({ code: 'trajectory', message: `by timed step ${layerRecord.gradSmallTerms.step}, ${fmt(layerRecord.gradSmallTerms.error)} times as many of the MLP weights' elements land where only the judge's AdamW step of the gradient the run's own layers' record gives without a small-term part lands (the part each position's smallest entries of an operand make, or the products under one threshold) as where only its step of the whole gradient lands (allowed ${v.mlp_grad_small_term_excess}): those terms were left out of the weight gradients` });
    }
    if (v.mlp_record_trajectory_excess !== null && layerRecord.steps && !(layerRecord.steps.error <= v.mlp_record_trajectory_excess)) {
      const w = layerRecord.steps;
      failures.push({ code: 'trajectory', message: `at timed step ${w.step}, ${w.kind}'s step, pooled over the layers, lands ${fmt(w.error)} units of rounding-size gradient noise from the judge's AdamW step of the gradient the run's own layers' record gives (allowed ${v.mlp_record_trajectory_excess}): that step's MLP weight gradients were not computed from it` });
    }
    if (v.attention_record_trajectory_excess !== null && layerRecord.attentionSteps && !(layerRecord.attentionSteps.error <= v.attention_record_trajectory_excess)) {
      const w = layerRecord.attentionSteps;
      failures.push({ code: 'trajectory', message: `over the ${w.steps} timed steps from the second, ${w.kind}'s steps, pooled over the layers, land a median ${fmt(w.error)} units of rounding-size gradient noise from the judge's AdamW steps of the gradients the run's own layers' record gives (allowed ${v.attention_record_trajectory_excess}): the attention's weight gradients were not computed from it in the contract's arithmetic (bf16 or wider operands)` });
    }
  }
  const kind = worstKind(cmp);
  if (kind && !(kind.error <= v.kind_update_rel_error)) {
    failures.push({ code: 'update_error', message: `the update of ${kind.kind}, pooled over the layers, differs from the reference's by ${fmt(kind.error)} relative (allowed ${v.kind_update_rel_error})` });
  }
  const mlp = worstKind(cmp, MLP_KINDS);
  if (mlp && !(mlp.error <= v.mlp_update_rel_error)) {
    failures.push({ code: 'update_error', message: `the update of ${mlp.kind}, pooled over the layers, differs from the reference's by ${fmt(mlp.error)} relative (allowed ${v.mlp_update_rel_error} for the MLP's kinds): its weight gradients were not the batch's` });
  }
  const pair = worstPairExcess(cmp);
  if (pair && !(pair.excess <= v.mlp_pair_energy_excess)) {
    failures.push({
      code: 'layer_positions',
      message: `${pair.kind}'s difference from the reference's, pooled over the layers, lies between mismatched positions of the timed data ${fmt(pair.excess)} more than a white difference of its size would (allowed ${v.mlp_pair_energy_excess}): its weight gradients were estimated from mixed positions`,
    });
  }
  const group = worstGroup(cmp);
  if (group && !(group.shift <= v.group_loss_shift_abs)) {
    const g = cmp.groupShifts[group.group];
    const short = g.lastBatch - g.probe > 0;
    failures.push({
      code: 'group_loss',
      message: `with the reference's ${group.group} tensors in place of this run's, the last batch's loss moves ${fmt(-g.lastBatch)} and the probe's ${fmt(-g.probe)}: ${fmt(group.shift)} apart (allowed ${v.group_loss_shift_abs}); this run trained its ${group.group} ${short ? 'short of' : 'past'} what the last batch's gradients give`,
    });
  }
  const head = worstHeadAlignment(cmp);
  if (head && !(Math.abs(head.alignment) <= v.head_alignment_abs)) {
    failures.push({
      code: 'head_gradient',
      message: `lm_head differs from the reference's along timed batch ${head.batch + 1}'s own loss-head gradient by ${fmt(head.alignment)} of the reference's update (allowed ${v.head_alignment_abs}): a step used another batch's softmax-weighted hidden states in place of its own`,
    });
  }
  const positions = worstPositions(cmp.headPositionExcess, v.head_position_excess, v.head_position_excess_last);
  if (positions && !(positions.excess <= positions.allowed)) {
    failures.push({
      code: 'head_positions',
      message: `lm_head's difference from the reference's lies along timed batch ${positions.batch + 1}'s single positions' own loss-head gradients ${fmt(positions.excess)} more than along mismatched positions' (allowed ${positions.allowed}${positions.last ? ' on the last batch' : ''}): a step's lm_head gradient was not summed over every position`,
    });
  }
  const layers = worstPositions(cmp.layerPositions.map((l) => l.excess), v.layer_position_excess, v.layer_position_excess_last);
  if (layers && !(layers.excess <= layers.allowed)) {
    const kind = cmp.layerPositions[layers.batch].kind;
    failures.push({
      code: 'layer_positions',
      message: `${kind}'s difference from the reference's, pooled over the layers, lies along timed batch ${layers.batch + 1}'s single positions' own gradients ${fmt(layers.excess)} more than along mismatched positions' (allowed ${layers.allowed}${layers.last ? ' on the last batch' : ''}): a step's weight gradient was not summed over every position`,
    });
  }
  return failures;
}

/**
 * The timed batch along whose own dense loss-head gradient part (P^T H / N less its mean-field
 * part, less the mean of every timed batch's) this run's lm_head differs most from the reference's, as a share of the reference's lm_head update
 * (NaN counts as furthest). Honest rounding differences point nowhere in particular; a step that
 * reused another batch's dense part leaves a difference along both batches' directions (README,
 * Verification).
 */
export function worstHeadAlignment(cmp: Pick<NativeComparison, 'headAlignment'>): { batch: number; alignment: number } | null {
  let worst: { batch: number; alignment: number } | null = null;
  cmp.headAlignment.forEach((a, batch) => {
    const alignment = Number.isNaN(a) ? Infinity : a;
    if (!worst || Math.abs(alignment) > Math.abs(worst.alignment)) worst = { batch, alignment };
  });
  return worst;
}

/**
 * The timed batch whose position excess (head_position_excess, or a layer kind's) is furthest over
 * its limit (NaN counts as furthest): how much more of a weight's difference from the reference's
 * lies along that batch's single positions' own rank-one gradient parts than along mismatched
 * pairs. Honest rounding differences have no preference for matched pairs; a step that estimated
 * a gradient from a sample of positions leaves its error along each position's own part, with
 * random signs (README, Verification). The last batch has its own limit: the last step's honest
 * rounding differences are per-position changes not yet mixed by a later step.
 */
export function worstPositions(
  perBatch: number[],
  allowedBefore: number,
  allowedLast: number,
): { batch: number; excess: number; allowed: number; last: boolean } | null {
  let worst: { batch: number; excess: number; allowed: number; last: boolean } | null = null;
  const n = perBatch.length;
  perBatch.forEach((e, batch) => {
    const excess = Number.isNaN(e) ? Infinity : e;
    const last = batch === n - 1;
    const allowed = last ? allowedLast : allowedBefore;
    if (!worst || excess / allowed > worst.excess / worst.allowed) worst = { batch, excess, allowed, last };
  });
  return worst;
}

/** A position excess over the timed batches before the last, and on the last: each as calibrate reads it (0 at least). */
export function positionMaxima(excess: number[]): { before: number; last: number } {
  const size = (e: number) => (Number.isNaN(e) ? Infinity : Math.max(0, e));
  return { before: Math.max(0, ...excess.slice(0, -1).map(size)), last: excess.length ? size(excess[excess.length - 1]) : 0 };
}

/**
 * Kinds of tensor whose update says nothing: the key projection's bias. It
 * adds q . b_k to every score of a query alike, and softmax ignores a common
 * shift, so its true gradient is zero and what AdamW makes of its rounding
 * noise is noise (honest variants differ from the reference by 0.4 there,
 * measured). Skipping its work saves nothing: it is one add.
 */
const UNCHECKED_KINDS = /(^|\.)self_attn\.k_proj\.bias$/;

/**
 * The group of tensors whose swap for the reference's moves the last batch's loss furthest from how
 * it moves the probe's, either way (NaN counts as furthest). The last step's update is the only one
 * that knows the last batch, so a group trained on it (by its gradients) drops that batch's loss
 * beyond the held-out probe's as the reference's does; honest rounding, and the chaos it grows into
 * on the GPU, moves both alike (README, Verification).
 */
export function worstGroup(cmp: Pick<NativeComparison, 'groupShifts'>): { group: string; shift: number } | null {
  let worst: { group: string; shift: number } | null = null;
  for (const [group, g] of Object.entries(cmp.groupShifts)) {
    const d = Math.abs(g.lastBatch - g.probe);
    const shift = Number.isNaN(d) ? Infinity : d;
    if (!worst || shift > worst.shift) worst = { group, shift };
  }
  return worst;
}

/**
 * The step and kind of tensor (of those `among` matches) whose step lands furthest from the judge's own, in noise
 * units (trajectory.cpp; NaN counts as furthest), the key projection's bias left out as in worstKind; null where no
 * trajectory is recorded. lm_head's, the MLP's and the attention's (head_, mlp_ and attention_trajectory_excess) are
 * judged, each with its own limit: the honest spread against this noise differs by kind
 * (docs/measurements/2026-12-05-trajectory.md, 2026-12-05-mlp-trajectory.md, 2026-12-05-attack22.md).
 */
export function worstTrajectory(outcome: Pick<NativeRunOutcome, 'trajectory'>, among = /./): { step: number; kind: string; error: number } | null {
  let worst: { step: number; kind: string; error: number } | null = null;
  outcome.trajectory.forEach((t, i) => {
    const w = largest(t.kinds, among, UNCHECKED_KINDS);
    if (w && (!worst || w.value > worst.error)) worst = { step: i + 1, kind: w.key, error: w.value };
  });
  return worst;
}
const HEAD_KIND = /^lm_head\.weight$/;

/** The loss head's record (train_api.h, version 5): the step whose input and whose gradient are furthest from the judge's (NaN counts as furthest), of the steps with every row recorded; null where there are none. */
export function worstHeadRecord(outcome: Pick<NativeRunOutcome, 'trajectory'>): { input: { step: number; error: number }; grad: { step: number; error: number } } | null {
  // Steps with rows missing are the missing rows' failure, not a reading.
  const steps = outcome.trajectory.map((t, i) => ({ step: i + 1, read: t.recorded && t.headRowsMissing === 0, input: Number.isNaN(t.headInputError) ? Infinity : t.headInputError, grad: Number.isNaN(t.headGradError) ? Infinity : t.headGradError }))
    .filter((t) => t.read);
  if (steps.length === 0) return null;
  const worst = (key: 'input' | 'grad') => steps.reduce((a, b) => (b[key] > a[key] ? b : a));
  const input = worst('input'), grad = worst('grad');
  return { input: { step: input.step, error: input.input }, grad: { step: grad.step, error: grad.grad } };
}

type StepError = { step: number; error: number };
/**
 * The layers' record (train_api.h, version 6): the steps whose recorded forward and backward are furthest from the
 * judge's own computation from the record, and the step and MLP kind (and attention kind) whose step lands furthest
 * from the judge's from the record's gradient (NaN counts as furthest), of the steps with every row of every layer
 * recorded; null where it is not recorded.
 */
export function worstLayerRecord(outcome: Pick<NativeRunOutcome, 'trajectory'>): { forward: StepError; backward: StepError; smallTerms: StepError; smallEnergy: StepError; gradSmallTerms: StepError; steps: KindStepError | null; attentionSteps: KindMedianError | null } | null {
  const read = outcome.trajectory.map((t, i) => ({ t, step: i + 1 })).filter(({ t }) => t.recorded && t.layerForwardError !== undefined && t.layerRowsMissing === 0);
  if (read.length === 0) return null;
  const worst = (value: (t: NativeRunOutcome['trajectory'][number]) => number | undefined): StepError =>
    read.map(({ t, step }) => ({ step, error: Number.isNaN(value(t)) ? Infinity : (value(t) ?? 0) })).reduce((a, b) => (b.error > a.error ? b : a));
  const worstKindStep = (among: RegExp): KindStepError | null => {
    let out: KindStepError | null = null;
    for (const { t, step } of read) {
      const w = largest(t.recordKinds ?? {}, among);
      if (w && (!out || w.value > out.error)) out = { step, kind: w.key, error: w.value };
    }
    return out;
  };
  // The attention's kinds by their median over the steps from the second on (the first reads no element: none has a
  // history): an FP8 or tiled gradient is off in every step, while the tuned example's q and k gradients, which cancel
  // over the tokens, read one step in sixteen runs at 9.35 and the others at 2.3 at most.
  let attentionSteps: KindMedianError | null = null;
  const later = read.filter(({ step }) => step >= 2);
  const kinds = new Set(later.flatMap(({ t }) => Object.keys(t.recordKinds ?? {}).filter((k) => ATTENTION_KINDS.test(k))));
  for (const kind of kinds) {
    const values = later.map(({ t }) => t.recordKinds?.[kind]).filter((v): v is number => v !== undefined);
    if (values.length === 0) continue;
    const error = values.some(Number.isNaN) ? Infinity : quantile(values, 0.5);
    if (!attentionSteps || error > attentionSteps.error) attentionSteps = { kind, error, steps: values.length };
  }
  return { forward: worst((t) => t.layerForwardError), backward: worst((t) => t.layerBackwardError), smallTerms: worst((t) => t.layerSmallTerms), smallEnergy: worst((t) => t.layerSmallEnergy), gradSmallTerms: worst((t) => t.mlpGradSmallTerms), steps: worstKindStep(MLP_KINDS), attentionSteps };
}
type KindStepError = { step: number; kind: string; error: number };
type KindMedianError = { kind: string; error: number; steps: number };

/** The MLP's kinds, which mlp_update_rel_error and mlp_pair_energy_excess bound besides kind_update_rel_error. */
const MLP_KINDS = /(^|\.)mlp\.(gate|up|down)_proj\.weight$/;

/** The attention's weights, judged on the trajectory by attention_trajectory_excess. */
const ATTENTION_KINDS = /(^|\.)self_attn\.(q|k|v|o)_proj\.weight$/;

/** The MLP kind whose difference lies most along the data between mismatched positions (NaN counts as furthest). */
export function worstPairExcess(cmp: Pick<NativeComparison, 'layerPairExcess'>): { kind: string; excess: number } | null {
  const w = largest(cmp.layerPairExcess ?? {}, MLP_KINDS);
  return w && { kind: w.key, excess: w.value };
}

/** The kind of tensor (of those `among` matches) whose pooled update is furthest from the reference's (NaN counts as furthest). */
export function worstKind(cmp: Pick<NativeComparison, 'kindRelErrors'>, among = /./): { kind: string; error: number } | null {
  const w = largest(cmp.kindRelErrors, among, UNCHECKED_KINDS);
  return w && { kind: w.key, error: w.value };
}

/** The largest value among the keys `among` matches and `skip` does not (NaN counts as largest). */
function largest(values: Record<string, number>, among: RegExp, skip?: RegExp): { key: string; value: number } | null {
  let worst: { key: string; value: number } | null = null;
  for (const [key, v] of Object.entries(values)) {
    if (skip?.test(key) || !among.test(key)) continue;
    const value = Number.isNaN(v) ? Infinity : v;
    if (!worst || value > worst.value) worst = { key, value };
  }
  return worst;
}

/** The q-quantile of xs, interpolating between order statistics. */
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  const at = (s.length - 1) * q;
  const lo = Math.floor(at);
  return s[lo] + (s[Math.min(lo + 1, s.length - 1)] - s[lo]) * (at - lo);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** One submission to judge, optionally with extra environment for its runner. */
export interface Entrant {
  file: string;
  /** Extra environment for this submission's runner (e.g. OMP_NUM_THREADS=1). */
  env?: Record<string, string>;
  /** Its name in progress lines (default: "submission", numbered when there are several). */
  label?: string;
}

export interface EvaluateManyOptions extends Omit<EvaluateOptions, 'submission' | 'submissionEnv'> {
  submissions: Entrant[];
  /**
   * Called after each run of a submission, once its sandbox has ended and its
   * scratch folder is gone, before the next runner starts (tests check that
   * nothing of the run is left).
   */
  afterRun?: (submission: number, run: number) => Promise<void> | void;
}

/** One submission judged as a validator judges it: `evaluateSubmissions` with a list of one. */
export async function evaluateSubmission(o: EvaluateOptions): Promise<Verdict> {
  const { submission, submissionEnv, ...rest } = o;
  const [verdict] = await evaluateSubmissions({ ...rest, submissions: [{ file: submission, env: submissionEnv }] });
  return verdict;
}

/**
 * Several submissions judged against one reference run per seed: one
 * evaluator; for each run i, the official baseline runs once on run i's seed
 * and every submission's run i is compared with it. Each verdict is exactly
 * what judging that submission alone on those seeds would give. For
 * calibration and tests; a validator judges one submission per evaluation, on
 * fresh seeds.
 */
export async function evaluateSubmissions(o: EvaluateManyOptions): Promise<Verdict[]> {
  const progress = o.onProgress ?? (() => {});
  const addon = loadAddon();
  const box = Sandbox.open({ secrets: secretPaths(o) });
  const build = loadPluginBuild();
  // One device per rank (gpus_per_evaluation of them), rank 0's first.
  const ranks = o.hparams.gpus_per_evaluation;
  const rankDevices = o.rankDevices ?? defaultRankDevices(o.device, ranks);
  if (rankDevices.length !== ranks) throw new UserError(`gpus_per_evaluation is ${ranks}, but ${rankDevices.length} device(s) were given for the evaluation: ${rankDevices.join(', ')}`);
  if (o.batchSize % ranks !== 0) throw new UserError(`a batch of ${o.batchSize} rows does not split into gpus_per_evaluation = ${ranks} equal shares`);
  const cuda = rankDevices[0].startsWith('cuda');
  const config = readQwen2Config(path.join(o.benchmarkDir, CONFIG_PATH));
  const tokens = readTokens(path.join(o.benchmarkDir, DATA_PATH));
  for (let i = 0; i < tokens.ids.length; i++) {
    if (tokens.ids[i] >= config.vocab_size) throw new UserError(`benchmark data: token id ${tokens.ids[i]} is outside the vocabulary of ${config.vocab_size}`);
  }
  const data = planData(tokens, { probeRows: o.hparams.verification.probe_rows, probeSeed: probeSeed(o.seed), batchSize: o.batchSize, steps: o.steps, warmupSteps: o.warmupSteps });
  fs.mkdirSync(o.workDir, { recursive: true });
  const workDir = fs.realpathSync(o.workDir);
  const label = (k: number) => o.submissions[k].label ?? (o.submissions.length === 1 ? 'submission' : `submission ${k + 1}/${o.submissions.length}`);

  progress(o.submissions.length === 1 ? 'compiling the baseline and the submission' : `compiling the baseline and ${o.submissions.length} submissions`);
  const cache = o.pluginCache ?? compileCacheDir(path.join(workDir, 'plugins'));
  // The baseline and the submissions compile side by side, the baseline first; a
  // submission's run waits only for its own plugin, so later ones compile while earlier ones run.
  const compiles = inOrder([BASELINE, ...o.submissions.map((s) => s.file)], Math.max(2, Math.ceil(os.cpus().length / 2)), async (f) => {
    const checked = checkSubmission(f, o.hparams.max_code_bytes);
    return checked.ok ? compileCached(checked.source, { cacheDir: cache, build, sandbox: box }) : checked;
  });
  try {
    return await judgeAll(o, { addon, box, build, cuda, rankDevices, config, tokens, data, workDir, label, compiles, progress });
  } finally {
    await Promise.allSettled(compiles); // nothing keeps writing to the cache after we return
  }
}

async function judgeAll(
  o: EvaluateManyOptions,
  c: {
    addon: ReturnType<typeof loadAddon>;
    box: Sandbox;
    build: PluginBuild;
    cuda: boolean;
    rankDevices: string[];
    config: ReturnType<typeof readQwen2Config>;
    tokens: TokenSet;
    data: ReturnType<typeof planData>;
    workDir: string;
    label: (k: number) => string;
    compiles: Promise<CompileResult>[];
    progress: (text: string) => void;
  },
): Promise<Verdict[]> {
  const { addon, box, build, cuda, rankDevices, config, tokens, data, workDir, progress } = c;
  const thresholds = cuda ? o.hparams.verification.cuda : o.hparams.verification.cpu;
  const [refCompile, ...subCompiles] = c.compiles;
  const ref = await refCompile;
  if (!ref.ok) throw new UserError(`the official baseline does not compile here: ${ref.message}`);
  const binds = toolchainBinds(build);
  const numParameters = addon.numParameters(config);
  const sandboxOf = (plugin: string) => {
    const user = box.user(runnerJob(plugin, path.join(workDir, 'run-'), binds, cuda));
    return { bwrap: box.bwrap, uid: user.uid, root_because: user.rootBecause ?? null };
  };
  const subs: (CompileResult | undefined)[] = o.submissions.map(() => undefined);
  const runs: RunReport[][] = o.submissions.map(() => []);
  const referenceRuns: RunReport[] = [];
  const verdicts = () =>
    o.submissions.map((_, k): Verdict => {
      const sub = subs[k];
      const empty: Verdict = { accepted: false, parameters: numParameters, reasons: [], runs: [], reference_runs: [], tokens_per_second: null, mfu: null, limits: thresholdValues(thresholds), sandbox: sandboxOf(sub?.ok ? sub.pluginPath : ref.pluginPath) };
      if (sub && !sub.ok) return { ...empty, reasons: [`compile: ${sub.message}`] };
      return { ...empty, ...score(runs[k], o.runs, numParameters, o.peakTflops), runs: runs[k], reference_runs: referenceRuns };
    });
  // No reference run for nothing: wait until one submission compiled, or all failed to.
  const anyCompiled = await Promise.any(subCompiles.map((p) => p.then((r) => (r.ok ? true : Promise.reject(new Error(r.message)))))).catch(() => false);
  if (!anyCompiled) {
    for (let k = 0; k < subs.length; k++) subs[k] = await subCompiles[k];
    return verdicts();
  }

  const { evaluator } = await openEvaluator({
    config,
    device: rankDevices[0],
    devices: rankDevices,
    dtype: o.dtype ?? 'bfloat16',
    attention: o.attention ?? 'auto',
    batchSize: o.batchSize,
    seqLen: tokens.seqLen,
    steps: o.steps,
    warmupSteps: o.warmupSteps,
    optimizer: o.hparams.optimizer,
    probe: data.probe,
    timeouts: o.hparams.runner_timeouts,
    checkpointPerturbation: o.checkpointPerturbation,
    recordTrajectory: o.recordTrajectory ?? recordsTrajectory(thresholds),
    recordLayers: o.recordLayers ?? recordsLayers(thresholds),
  }, path.dirname(path.join(o.benchmarkDir, CONFIG_PATH)));
  // The loader path is the one piece of the host environment a runner needs (GPU drivers live there on some hosts).
  const hostEnv: Record<string, string> = process.env.LD_LIBRARY_PATH ? { LD_LIBRARY_PATH: process.env.LD_LIBRARY_PATH } : {};
  const expectedTokens = o.steps * o.batchSize * tokens.seqLen;

  try {
    for (let i = 0; i < o.runs; i++) {
      const { seed, warmupSeed } = runSeeds(o.seed, i);
      const { timed, warmup } = data.forRun(seed, warmupSeed);
      const runOnce = async (plugin: string, who: string, extraEnv: Record<string, string>) => {
        const scratch = fs.mkdtempSync(path.join(workDir, 'run-'));
        try {
          const job = runnerJob(plugin, scratch, binds, cuda, o.runnerMemoryBytes);
          box.prepareScratch(job);
          return await native(`${who} run`, () =>
            evaluator.run(
              {
                argv: box.argv({ ...job, command: runnerCommand(plugin, rankDevices.length), env: { ...hostEnv, ...o.runnerEnv, ...extraEnv }, bwrapArgs: ['--info-fd', String(addon.runnerInfoFd)] }),
                seed,
                warmupSeed,
                seqLen: tokens.seqLen,
                warmupTokens: warmup,
                timedTokens: timed,
                logPath: path.join(scratch, 'runner.log'),
                reference: who === 'reference',
              },
              (phase) => progress(`run ${i + 1}/${o.runs}: ${who}: ${phase}`),
            ),
          );
        } finally {
          fs.rmSync(scratch, { recursive: true, force: true });
        }
      };

      const r = await runOnce(ref.pluginPath, 'reference', {});
      referenceRuns.push(report(seed, r, [], null, expectedTokens, o.steps));
      if (!r.completed || r.reportedTokens !== expectedTokens) {
        throw new UserError(`the official baseline failed its run on this machine (${r.failureCode}: ${r.failureMessage || `reported ${r.reportedTokens} tokens`}); the evaluation cannot be judged`);
      }
      // Timing capture, beside the run's own phases: what keeping the reference and each comparison cost.
      const phases = (x: RunReport) => (x.phase_seconds ??= {});
      let t = performance.now();
      const refId = evaluator.keepLast();
      phases(referenceRuns[referenceRuns.length - 1]).keep_reference = (performance.now() - t) / 1000;
      try {
        for (let k = 0; k < o.submissions.length; k++) {
          const sub = (subs[k] ??= await subCompiles[k]);
          if (!sub.ok) continue;
          const who = c.label(k);
          const s = await runOnce(sub.pluginPath, who, o.submissions[k].env ?? {});
          if (!s.completed) {
            runs[k].push(report(seed, s, [{ code: asFailureCode(s.failureCode), message: s.failureMessage }], null, expectedTokens, o.steps));
          } else {
            progress(`run ${i + 1}/${o.runs}: ${who}: comparing with the reference`);
            t = performance.now();
            const cmp = await native('comparing with the reference', () => evaluator.compareLastWith(refId, seed));
            const failures = judge(thresholds, s, r, cmp, expectedTokens, o.steps);
            const rep = report(seed, s, failures, { cmp, ref: r }, expectedTokens, o.steps);
            const margin = measureRun(who, rep, thresholds);
            rep.largest_check = { check: margin.worstCheck, of_limit: Number.isFinite(margin.worst) ? margin.worst : null };
            phases(rep).compare = (performance.now() - t) / 1000;
            Object.assign(phases(rep), cmp.phaseSeconds);
            runs[k].push(rep);
          }
          await o.afterRun?.(k, i);
        }
      } finally {
        evaluator.release(refId);
      }
    }
  } finally {
    evaluator.close(); // the device memory goes now, not when the garbage collector runs
  }
  return verdicts();
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
  const cells = c && cellLossChecks(r.cellLosses, c.ref.cellLosses, steps);
  const kind = c && worstKind(c.cmp);
  const mlp = c && worstKind(c.cmp, MLP_KINDS);
  const pairExcess = c && worstPairExcess(c.cmp);
  const group = c && worstGroup(c.cmp);
  const head = c && worstHeadAlignment(c.cmp);
  const headPositions = c && positionMaxima(c.cmp.headPositionExcess);
  const layerPositions = c && positionMaxima(c.cmp.layerPositions.map((l) => l.excess));
  const trajectory = worstTrajectory(r);
  const headSteps = worstTrajectory(r, HEAD_KIND);
  const mlpSteps = worstTrajectory(r, MLP_KINDS);
  const attentionSteps = worstTrajectory(r, ATTENTION_KINDS);
  const headRecord = worstHeadRecord(r);
  const layerRecord = worstLayerRecord(r);
  return {
    seed,
    ok: r.completed && failures.length === 0,
    failures,
    seconds: r.completed ? r.seconds : null,
    tokens: r.completed ? expectedTokens : 0,
    tokens_per_second: r.completed ? expectedTokens / r.seconds : null,
    overhead_seconds: r.overheadSeconds,
    checkpoint_seconds: r.checkpointSeconds,
    phase_seconds: r.phaseSeconds,
    step_seconds: r.completed ? r.seconds / steps : null,
    reported_loss: r.completed ? r.reportedLoss : null,
    reported_peak_memory_bytes: r.completed ? r.reportedPeakMemory : null,
    checks: c && cells && {
      probe_loss: r.probeLoss,
      reference_probe_loss: c.ref.probeLoss,
      initial_probe_loss: c.ref.initialProbeLoss,
      cell_loss_deviation: cells.cell,
      batch_loss_shift: cells.shift,
      logits_rel_error: c.cmp.logitsRelError,
      update_rel_error: c.cmp.updateRelError,
      max_tensor_rel_error: c.cmp.maxTensorRelError,
      max_kind_rel_error: kind?.error ?? 0,
      worst_kind: kind?.kind ?? null,
      max_mlp_kind_rel_error: mlp?.error ?? 0,
      kind_rel_errors: c.cmp.kindRelErrors,
      max_group_shift: group?.shift ?? 0,
      worst_group: group?.group ?? null,
      group_shifts: Object.fromEntries(Object.entries(c.cmp.groupShifts).map(([g, x]) => [g, { last_batch: x.lastBatch, probe: x.probe }])),
      max_head_alignment: head ? Math.abs(head.alignment) : 0,
      head_alignment: c.cmp.headAlignment,
      max_head_position_excess: headPositions!.before,
      last_head_position_excess: headPositions!.last,
      head_position_excess: c.cmp.headPositionExcess,
      max_layer_position_excess: layerPositions!.before,
      last_layer_position_excess: layerPositions!.last,
      layer_positions: c.cmp.layerPositions,
      layer_pair_energy: c.cmp.layerPairEnergy,
      max_mlp_pair_excess: pairExcess ? pairExcess.excess : 0,
      head_pair_energy: c.cmp.headPairEnergy,
      max_trajectory_error: trajectory?.error ?? 0,
      max_head_trajectory: headSteps?.error ?? 0,
      max_mlp_trajectory: mlpSteps?.error ?? 0,
      max_attention_trajectory: attentionSteps?.error ?? 0,
      max_head_input_error: headRecord?.input.error ?? 0,
      max_head_grad_error: headRecord?.grad.error ?? 0,
      ...(layerRecord && { max_layer_forward_error: layerRecord.forward.error, max_layer_backward_error: layerRecord.backward.error, max_layer_small_terms: layerRecord.smallTerms.error, max_layer_small_energy: layerRecord.smallEnergy.error, max_mlp_record_trajectory: layerRecord.steps?.error ?? 0, max_attention_record_trajectory: layerRecord.attentionSteps?.error ?? 0, max_mlp_grad_small_terms: layerRecord.gradSmallTerms.error }),
      worst_trajectory: trajectory && { step: trajectory.step, kind: trajectory.kind },
      trajectory: r.trajectory.map((t) => t.kinds),
      changed_share: c.cmp.changedShare,
      reference_changed_share: c.cmp.referenceChangedShare,
      frozen_tensors: c.cmp.frozen,
    },
  };
}
