// Typed, validated loader for hparams/hparams.json. An unknown key or a value of
// the wrong type or range is an error naming the key: a typo in a validator's
// settings must never silently fall back to a default.
import { readJsonFile } from '../util/json';
import { UserError } from '../errors';

export interface OptimizerParams {
  lr: number;
  weight_decay: number;
  beta1: number;
  beta2: number;
  eps: number;
}

/**
 * Verification thresholds for one kind of device. Each follows from the
 * measured noise floor of honest code on that kind (README, "Verification"):
 * a run fails when it is further from the reference than honest variants
 * were, with margin. CPU runs are deterministic and tiny; CUDA runs are not.
 */
export interface Thresholds {
  /** |probe loss - reference probe loss| allowed. */
  probe_loss_abs: number;
  /**
   * Per cell (a run of consecutive positions of a row) of each timed batch,
   * the final weights' loss minus the reference's, above the batch's lower
   * quartile of those differences: the largest allowed. Tokens a run skipped
   * stand out from the rest of their batch.
   */
  cell_loss_abs: number;
  /** Per timed batch, the final weights' mean loss minus the reference's: the largest allowed. */
  batch_loss_abs: number;
  /** ||logits - reference logits|| / ||reference logits|| allowed. */
  logits_rel_error: number;
  /** ||update - reference update|| / ||reference update|| allowed (a coarse bound). */
  update_rel_error: number;
  /** The same, per kind of tensor pooled over the layers (e.g. every layer's q_proj weight): the largest allowed. */
  kind_update_rel_error: number;
  /**
   * The same for the MLP's kinds (every layer's gate, up and down weight), the largest allowed. Their honest
   * spread is a third of the attention's, so their own limit is tighter: a step whose MLP weight gradients
   * were estimated (a count sketch of the positions, unbiased, with no preference for any position) is told
   * apart by the size of its error alone.
   */
  mlp_update_rel_error: number;
  /**
   * Per MLP kind: how much more of the weight difference lies between mismatched positions of the timed
   * data than a white difference of its size would put there (the mean over the timed batches less 1),
   * the largest allowed. Rounding differences spread evenly; an unbiased estimate of the weight gradient
   * from mixed positions (a count sketch) leaves its error along the data's own directions.
   */
  mlp_pair_energy_excess: number;
  /**
   * Per group of tensors (attention, mlp, norm, embedding, head), with that group taken from the
   * reference's final weights: |how far the last batch's loss moves - how far the probe's moves|, the largest allowed.
   */
  group_loss_shift_abs: number;
  /**
   * Per timed batch: |this run's lm_head minus the reference's, along that batch's own dense
   * loss-head gradient| as a share of the reference's lm_head update, the largest allowed.
   */
  head_alignment_abs: number;
  /**
   * Per timed batch but the last: how much more of lm_head's difference from the reference's lies along single
   * positions' own rank-one gradient parts than along mismatched pairs (sum a^2 / sum b^2 - 1), the largest allowed.
   */
  head_position_excess: number;
  /**
   * The same for the last timed batch, which has its own limit: the last step's honest rounding
   * differences are themselves a sum of small changes to each position's own part, not yet mixed by a later step.
   */
  head_position_excess_last: number;
  /**
   * Per timed batch but the last: head_position_excess's reading for the decoder's linear layers (q, k, v, o,
   * gate, up, down), pooled over the layers per kind, the worst kind's, the largest allowed.
   */
  layer_position_excess: number;
  /** The same for the last timed batch. */
  layer_position_excess_last: number;
  /**
   * lm_head's trajectory reading (every timed step repeated by the judge from the weights the run recorded before it):
   * how far the run's step of lm_head lands from the judge's own, in units of what a rounding-size gradient noise
   * moves it, the largest over the steps allowed. null: not applied on this kind of device (CUDA, where no trajectory is recorded yet).
   */
  head_trajectory_excess: number | null;
  /**
   * The same reading for the MLP's weights (gate, up, down), pooled over the layers per kind, the worst kind's, the
   * largest over the steps allowed. Their gradients carry the loss head's input gradient into every layer: a step
   * computed from an estimate of it shows here (the nineteenth attack pass's linearised tail). null: not applied on this
   * kind of device.
   */
  mlp_trajectory_excess: number | null;
  /**
   * The same reading for the attention's weights (q, k, v, o). Honest kernels read wider there than on the MLP (the
   * tuned example up to 37 on the CPU), and the twelfth pass's tail reads no more; a sketched q/k gradient (the
   * twenty-second attack pass) reads in the thousands. null: not applied on this kind of device.
   */
  attention_trajectory_excess: number | null;
  /**
   * The loss head's record (train_api.h, version 5), per timed step: the run's loss-head input against the judge's own
   * forward from the weights the step started from, relative (Frobenius). Honest kernels differ only by the forward's
   * rounding. null: not applied on this kind of device.
   */
  head_input_error: number | null;
  /**
   * The same record's gradient against the nearer of the judge's own two from the run's recorded input (the
   * reference's arithmetic and float32 throughout, the two the contract allows), relative (Frobenius): honest runs
   * read about 0; an estimated softmax tail (the twenty-third and twenty-fifth attack passes) reads at its own size.
   * null: not applied on this kind of device.
   */
  head_grad_error: number | null;
  /**
   * The layers' record (train_api.h, version 6), per timed step: every recorded value of the forward (each layer's
   * residual after the attention and MLP output, the loss head's input) against the judge's own computation of it from
   * the record's value before it (the layer's input: the embeddings or the layer before's residual plus MLP output),
   * with the weights the step started from, the worst row's relative error over the layers (the MLP against the nearer
   * of the reference's arithmetic and float32 throughout). One layer's rounding: honest runs read about 0 where the
   * judge's own forward reads their rounding grown through every layer; an MLP or an attention that skipped part of its
   * work reads at its own size (attack passes 31 and 32). null: not applied on this kind of device (and the layers'
   * record not taken there).
   */
  layer_forward_error: number | null;
  /**
   * The same for the backward: each layer's MLP input gradient from its recorded output gradient, and each layer's
   * output gradient from the layer above's (the loss head's recorded gradient at the top).
   */
  layer_backward_error: number | null;
  /**
   * The same record's MLP links read by the error's direction, not its size: for a few shares q, the part of the
   * product that each position's smallest q of its operand make (the MLP's output from silu(gate) up, its input
   * gradient from d gate and d up), and the share of that part the recorded value lacks, fitted over the step's rows
   * and layers. Honest rounding does not follow that part and reads about 0; a run that dropped those terms lacks all of
   * it, however small it is next to the product (the thirty-third attack pass spent each link's size limit so).
   */
  layer_small_term_share: number | null;
  /**
   * The same links read by the error's energy: each term's weight vector's share of the error's energy (its component
   * along the vector, squared, over the vector's norm squared), summed over each position's smallest q of the operand
   * less what the rest's mean gives as many: the error's excess along the small terms, as a size relative to the value
   * (as layer_forward_error and layer_backward_error read, pooled over the step's rows and layers). Honest rounding
   * lands evenly on every vector, or more on the large terms' (their operand rounds by more): about 0. Small terms
   * dropped without bias (kept at random with probability |t| / cut, at the cut's size: the thirty-fourth attack pass)
   * leave no missing share, but an error along their own vectors, most of it in excess.
   */
  layer_small_term_energy: number | null;
  /**
   * The MLP's weights' trajectory reading with each step judged from the gradient the judge computes from the layers'
   * record (the MLP's input from the recorded residual, its output gradient as recorded) and its own moments from
   * those, not from its own backward: one layer's rounding, where the judge's own spreads as wide as honest kernels'
   * rounding through the layers. An MLP backward that skipped part of its products (the twenty-eighth attack pass)
   * reads at its own size. null: not applied on this kind of device.
   */
  mlp_record_trajectory_excess: number | null;
  /**
   * The same for the attention's weights (q, k, v, o): each step judged from the gradient the judge computes from the
   * layers' record (the layer's input and the residual's gradient the record gives) with its own moments. FP8 operands
   * in those gradients or tiles left out of them (attack passes 36 and 38) read at their own size. null: not applied.
   */
  attention_record_trajectory_excess: number | null;
  /**
   * The MLP weights' record-judged steps read against a cheat's: for each small-term part of the weight gradients (the
   * part each position's smallest q of an operand make, q of 5 to 35%, either operand: gate: d gate and the MLP's
   * input; up: d up and the input; down: silu(gate) up and the output gradient; and the products a[t,i] b[t,n] under
   * one threshold over the whole product, its q of 10, 14 and 20%), the judge's AdamW step of the record's gradient
   * without the part (with moments from such gradients in every step so far, as a run that drops them keeps). The
   * reading: the elements whose run weight only that step gives over those only the judge's whole step gives, pooled
   * over the MLP kinds, layers and steps from the third on; the largest over the parts. Honest rounding, which does not
   * follow the part, lands mostly on the whole step (0.31 to 0.39 for accumulation over two halves, wider over more
   * micro-batches: sixteen read 0.74); a gradient that left those terms out lands on the other (the thirty-fourth attack pass dropped 8% of the operands, 2.12% of a 7B step; the
   * thirty-fifth 12% of the products, 3.18%).
   */
  mlp_grad_small_term_excess: number | null;
  /** changed share / reference changed share must be at least this. */
  min_changed_share_ratio: number;
  /** The measurement these rest on: where, how, the worst honest run and the closest cheat. */
  basis: string;
  /**
   * Where these thresholds were calibrated (`tournament calibrate --write`):
   * a validator refuses to judge on a kind of device none of them names.
   */
  calibrations: CalibrationRecord[];
}

/** The thresholds a calibration sets (every key of Thresholds that is a number). */
export const THRESHOLD_KEYS = ['probe_loss_abs', 'cell_loss_abs', 'batch_loss_abs', 'logits_rel_error', 'update_rel_error', 'kind_update_rel_error', 'mlp_update_rel_error', 'mlp_pair_energy_excess', 'group_loss_shift_abs', 'head_alignment_abs', 'head_position_excess', 'head_position_excess_last', 'layer_position_excess', 'layer_position_excess_last', 'head_trajectory_excess', 'mlp_trajectory_excess', 'attention_trajectory_excess', 'head_input_error', 'head_grad_error', 'layer_forward_error', 'layer_backward_error', 'layer_small_term_share', 'layer_small_term_energy', 'mlp_record_trajectory_excess', 'attention_record_trajectory_excess', 'mlp_grad_small_term_excess', 'min_changed_share_ratio'] as const;
export type ThresholdValues = Pick<Thresholds, (typeof THRESHOLD_KEYS)[number]>;

/** The thresholds that read the trajectory and the loss head's record: runs record those only where one of them is set. */
export const TRAJECTORY_KEYS = ['head_trajectory_excess', 'mlp_trajectory_excess', 'attention_trajectory_excess', 'head_input_error', 'head_grad_error', 'layer_forward_error', 'layer_backward_error', 'layer_small_term_share', 'layer_small_term_energy', 'mlp_record_trajectory_excess', 'attention_record_trajectory_excess', 'mlp_grad_small_term_excess'] as const;

/** The thresholds that read the layers' record (train_api.h, version 6): runs record it only where one of them is set. */
export const LAYER_RECORD_KEYS = ['layer_forward_error', 'layer_backward_error', 'layer_small_term_share', 'layer_small_term_energy', 'mlp_record_trajectory_excess', 'attention_record_trajectory_excess', 'mlp_grad_small_term_excess'] as const;

/**
 * Whether runs judged by these thresholds record every timed step and the loss head (the runner's copies, the judge's
 * repeat of every step): where a limit reads them, and nowhere else, since the record costs the timed run a little
 * and the repeat costs the evaluation a replay of every run.
 */
export function recordsTrajectory(t: Pick<Thresholds, (typeof TRAJECTORY_KEYS)[number]>): boolean {
  return TRAJECTORY_KEYS.some((k) => t[k] !== null);
}

/**
 * Whether those runs record every layer's residual, MLP output and their gradients too (host memory: four
 * activations of every layer for every timed step, about 66 GB a run at the 7B shape) and the judge reads them.
 */
export function recordsLayers(t: Pick<Thresholds, (typeof LAYER_RECORD_KEYS)[number]>): boolean {
  return LAYER_RECORD_KEYS.some((k) => t[k] !== null);
}

/** The thresholds alone, without their basis and records. */
export function thresholdValues(t: Thresholds): ThresholdValues {
  return Object.fromEntries(THRESHOLD_KEYS.map((k) => [k, t[k]])) as unknown as ThresholdValues;
}

/** One calibration of a device's thresholds: on what, when, by which command, and the values it measured them to be. */
export interface CalibrationRecord {
  /** The kind of device: `cpu`, or the GPU's name (as nvidia-smi reports it, e.g. "NVIDIA H200"). */
  device: string;
  /** The day, YYYY-MM-DD (UTC). */
  date: string;
  command: string;
  /** The thresholds calibrated: the record holds only while these are the ones in force (a hand edit voids it). */
  thresholds: ThresholdValues;
}

/** The record that makes `t` calibrated on `deviceKind`, if any: same kind, same thresholds as in force. */
export function calibrationFor(t: Thresholds, deviceKind: string): CalibrationRecord | undefined {
  return t.calibrations.find((c) => c.device === deviceKind && THRESHOLD_KEYS.every((k) => c.thresholds[k] === t[k]));
}

export interface VerificationParams {
  /** Rows of the held-out probe batch. */
  probe_rows: number;
  cpu: Thresholds;
  cuda: Thresholds;
}

export interface RunnerTimeouts {
  start: number;
  warmup: number;
  timed: number;
}

/** When a new submission takes the lead (src/validator/scoring.ts). */
export interface LeaderThreshold {
  /** the smallest relative improvement that takes the lead */
  base: number;
  /** share of the excess over base lost every decay_interval_blocks */
  decay_percent: number;
  decay_interval_blocks: number;
  /** cap on the threshold a big improvement sets */
  max: number;
}

export interface Hparams {
  benchmark_model_name: string;
  benchmark_dataset_name: string;
  benchmark_batch_size: number;
  benchmark_seq_len: number;
  benchmark_num_samples: number;
  benchmark_data_seed: number;
  eval_steps: number;
  warmup_steps: number;
  evaluation_runs: number;
  optimizer: OptimizerParams;
  max_code_bytes: number;
  verification: VerificationParams;
  runner_timeouts: RunnerTimeouts;
  reveal_blocks: number;
  min_blocks_between_commits: number;
  netuid: number;
  burn_rate: number;
  burn_uid: number;
  set_weights_interval_blocks: number;
  leader_threshold: LeaderThreshold;
  block_time: number;
  /**
   * Devices (ranks) one evaluation trains on: 1, or G > 1 for a data-parallel
   * submission (one runner per rank, c10d between them; train_api.h). Each
   * rank gets benchmark_batch_size / G rows of every batch, so G must divide it.
   * Required like every key (the shipped file says 1): a file written for
   * one rank must not silently run on two, nor the other way round.
   */
  gpus_per_evaluation: number;
}

type Check = (v: unknown) => string | null; // null when valid, else what is wrong

const str: Check = (v) => (typeof v === 'string' && v.length > 0 ? null : 'a non-empty string');
const int = (min: number, max = Number.MAX_SAFE_INTEGER): Check => (v) =>
  Number.isInteger(v) && (v as number) >= min && (v as number) <= max ? null : `an integer in [${min}, ${max}]`;
const num = (min: number, max: number, openMin = false): Check => (v) =>
  typeof v === 'number' && Number.isFinite(v) && (openMin ? v > min : v >= min) && v <= max
    ? null
    : `a number in ${openMin ? '(' : '['}${min}, ${max}]`;

const OPTIMIZER_SCHEMA: Record<keyof OptimizerParams, Check> = {
  lr: num(0, 1, true),
  weight_decay: num(0, 1),
  beta1: num(0, 1),
  beta2: num(0, 1),
  eps: num(0, 1, true),
};

/** `check`, or null: a limit this kind of device does not apply. */
const orNull = (check: Check): Check => (v) => (v === null ? null : check(v) && `${check(v)}, or null`);

const THRESHOLD_VALUES_SCHEMA: Record<keyof ThresholdValues, Check> = {
  probe_loss_abs: num(0, 100, true),
  cell_loss_abs: num(0, 100, true),
  batch_loss_abs: num(0, 100, true),
  logits_rel_error: num(0, 10, true),
  update_rel_error: num(0, 10, true),
  kind_update_rel_error: num(0, 10, true),
  mlp_update_rel_error: num(0, 10, true),
  mlp_pair_energy_excess: num(0, 1000, true),
  group_loss_shift_abs: num(0, 100, true),
  head_alignment_abs: num(0, 10, true),
  head_position_excess: num(0, 1000, true),
  head_position_excess_last: num(0, 1000, true),
  layer_position_excess: num(0, 1000, true),
  layer_position_excess_last: num(0, 1000, true),
  head_trajectory_excess: orNull(num(0, 1e6, true)),
  mlp_trajectory_excess: orNull(num(0, 1e6, true)),
  attention_trajectory_excess: orNull(num(0, 1e6, true)),
  head_input_error: orNull(num(0, 1e6, true)),
  head_grad_error: orNull(num(0, 1e6, true)),
  layer_forward_error: orNull(num(0, 1e6, true)),
  layer_backward_error: orNull(num(0, 1e6, true)),
  layer_small_term_share: orNull(num(0, 1e6, true)),
  layer_small_term_energy: orNull(num(0, 1e6, true)),
  mlp_record_trajectory_excess: orNull(num(0, 1e6, true)),
  attention_record_trajectory_excess: orNull(num(0, 1e6, true)),
  mlp_grad_small_term_excess: orNull(num(0, 1e6, true)),
  min_changed_share_ratio: num(0, 1),
};

const date: Check = (v) => (typeof v === 'string' && /^\d{4}-\d{2}-\d{2}$/.test(v) && !Number.isNaN(Date.parse(v)) ? null : 'a date YYYY-MM-DD');

/** A JSON list whose every item must match `item`. */
class ListOf {
  constructor(readonly item: Schema) {}
}

const CALIBRATION_SCHEMA: Record<keyof CalibrationRecord, Check | Schema> = {
  device: str,
  date,
  command: str,
  thresholds: THRESHOLD_VALUES_SCHEMA,
};

const THRESHOLDS_SCHEMA: Record<keyof Thresholds, Check | Schema | ListOf> = {
  ...THRESHOLD_VALUES_SCHEMA,
  basis: str,
  calibrations: new ListOf(CALIBRATION_SCHEMA),
};

const VERIFICATION_SCHEMA = {
  probe_rows: int(1, 1024),
  cpu: THRESHOLDS_SCHEMA,
  cuda: THRESHOLDS_SCHEMA,
};

const TIMEOUTS_SCHEMA: Record<keyof RunnerTimeouts, Check> = {
  start: num(0, 86400, true),
  warmup: num(0, 86400, true),
  timed: num(0, 86400, true),
};

const LEADER_THRESHOLD_SCHEMA: Record<keyof LeaderThreshold, Check> = {
  base: num(0, 10),
  decay_percent: num(0, 1),
  decay_interval_blocks: int(1),
  max: num(0, 10),
};

type Schema = { [key: string]: Check | Schema | ListOf };

const SCHEMA: Record<keyof Hparams, Check | Schema> = {
  benchmark_model_name: str,
  benchmark_dataset_name: str,
  benchmark_batch_size: int(1, 4096),
  benchmark_seq_len: int(2, 1 << 20),
  benchmark_num_samples: int(1),
  benchmark_data_seed: int(0),
  eval_steps: int(1, 100000),
  warmup_steps: int(0, 100000),
  evaluation_runs: int(1, 1000),
  optimizer: OPTIMIZER_SCHEMA,
  max_code_bytes: int(1, 64 << 20),
  verification: VERIFICATION_SCHEMA,
  runner_timeouts: TIMEOUTS_SCHEMA,
  reveal_blocks: int(1),
  min_blocks_between_commits: int(0),
  netuid: int(0, 65535),
  burn_rate: num(0, 1),
  burn_uid: int(0, 65535),
  set_weights_interval_blocks: int(1),
  leader_threshold: LEADER_THRESHOLD_SCHEMA,
  block_time: num(0, 3600, true),
  gpus_per_evaluation: int(1, 64),
};

function validate(obj: unknown, schema: Schema, where: string, prefix = ''): void {
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new UserError(`${where}: ${prefix || 'the file'} must be a JSON object`);
  }
  const rec = obj as Record<string, unknown>;
  for (const key of Object.keys(rec)) {
    if (!(key in schema)) {
      throw new UserError(`${where}: unknown key "${prefix}${key}"`, {
        hint: `known keys: ${Object.keys(schema).join(', ')}`,
      });
    }
  }
  for (const [key, check] of Object.entries(schema)) {
    if (!(key in rec)) throw new UserError(`${where}: missing key "${prefix}${key}"`);
    if (typeof check === 'function') {
      const wrong = check(rec[key]);
      if (wrong) throw new UserError(`${where}: "${prefix}${key}" must be ${wrong}, got ${JSON.stringify(rec[key])}`);
    } else if (check instanceof ListOf) {
      const list = rec[key];
      if (!Array.isArray(list)) throw new UserError(`${where}: "${prefix}${key}" must be a JSON list, got ${JSON.stringify(list)}`);
      list.forEach((item, i) => validate(item, check.item, where, `${prefix}${key}[${i}].`));
    } else {
      validate(rec[key], check as Schema, where, `${prefix}${key}.`);
    }
  }
}

/** Validates an already-parsed object; `where` names its source in errors. */
export function parseHparams(obj: unknown, where = 'hparams'): Hparams {
  validate(obj, SCHEMA as Schema, where);
  const hp = obj as Hparams;
  if (hp.benchmark_batch_size % hp.gpus_per_evaluation !== 0) {
    throw new UserError(`${where}: "gpus_per_evaluation" (${hp.gpus_per_evaluation}) must divide "benchmark_batch_size" (${hp.benchmark_batch_size}): every rank trains on an equal share of each batch`);
  }
  return hp;
}

export function loadHparams(file = 'hparams/hparams.json'): Hparams {
  const obj = readJsonFile<unknown>(file);
  if (obj === null) throw new UserError(`hparams file ${file} does not exist`);
  return parseHparams(obj, file);
}
