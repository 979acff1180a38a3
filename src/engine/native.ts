// The one place that finds and loads the native addon, and says what to do
// when it cannot. Everything else imports the typed surface from here.
import { UserError } from '../errors';
import { PROJECT_ROOT } from '../util/paths';

export interface Qwen2Config {
  vocab_size: number;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  max_position_embeddings: number;
  rope_theta: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
}

export type Dtype = 'bfloat16' | 'float32' | 'float16';
export type Attention = 'auto' | 'sdpa' | 'math';

export interface ModelOptions {
  config: Qwen2Config;
  device: string;
  dtype: Dtype;
  attention: Attention;
  seed: number;
}

export interface ParameterInfo {
  name: string;
  shape: number[];
  dtype: Dtype;
}

/** A parameter's name and shape, as the engine registers them (what a checkpoint must hold). */
export type ParameterSpec = Pick<ParameterInfo, 'name' | 'shape'>;

export interface WeightEntry {
  name: string;
  file: string;
  offset: number;
  nbytes: number;
  dtype: Dtype;
}

export interface ForwardBackwardResult {
  logits: Float32Array;
  logitsShape: number[];
  loss: number;
  grads: Record<string, Float32Array>;
}

export interface OptimizerOptions {
  lr: number;
  weight_decay: number;
  beta1: number;
  beta2: number;
  eps: number;
}

export interface NativeModel {
  parameters(): ParameterInfo[];
  loadWeights(entries: WeightEntry[]): Promise<void>;
  forwardBackward(o: { ids: Int32Array; batch: number; seqLen: number; grads: string[] }): ForwardBackwardResult;
}

export interface EvaluatorOptions {
  config: Qwen2Config;
  device: string;
  /** One device per rank, rank 0's being `device` (several ranks, train_api.h); absent: one rank. */
  devices?: string[];
  dtype: Dtype;
  attention: Attention;
  batchSize: number;
  seqLen: number;
  steps: number;
  warmupSteps: number;
  optimizer: OptimizerOptions;
  /** Held-out probe batch, [rows, seqLen] row-major. */
  probe: Int32Array;
  /** Seconds per phase before the run fails with 'timeout'. */
  timeouts: { start: number; warmup: number; timed: number };
  /**
   * Relative size of each run's seeded perturbation of a checkpoint start,
   * w * (1 + p * N(0, 1)), applied on the clock (0: none; docs/design.md).
   */
  checkpointPerturbation: number;
  /**
   * Record every timed step's weights and the loss head's input and gradient,
   * and repeat the steps after the run (the trajectory and the loss head's
   * record; NativeRunOutcome.trajectory is empty without).
   */
  recordTrajectory: boolean;
  /** With it, record every layer's residual, MLP output and their gradients too, and read them (train_api.h, version 6). */
  recordLayers: boolean;
}

export interface NativeRunOutcome {
  completed: boolean;
  failureCode: string;
  failureMessage: string;
  seconds: number;
  overheadSeconds: number;
  reportedTokens: number;
  reportedLoss: number;
  /** The runner's own account of its peak memory (device on CUDA, max RSS on the CPU): informational, not verified. */
  reportedPeakMemory: number;
  probeLoss: number;
  initialProbeLoss: number;
  /** Seconds spent copying the checkpoint into the parameter memory (outside the clock, in overheadSeconds); null without a checkpoint. */
  checkpointSeconds: number | null;
  /** The final weights' loss on each cell of the timed batches: batch by batch, row by row, a few cells of consecutive positions per row. */
  cellLosses: number[];
  /**
   * The trajectory check, per timed step: whether the weights it started from were recorded (the run's start for
   * the first step; the plugin's data.step_done() for the others) and, per kind of tensor pooled over the layers,
   * how far the step's recorded result (the final weights for the last step) lands from the judge's own AdamW step of
   * that batch's gradient, in units of what rounding-size gradient noise moves it (trajectory.cpp). outOfReach: elements of the step's result further
   * from the weights before it than any AdamW step moves them. headInputError, headGradError: the loss head's record of
   * the step (train_api.h, version 5), its input against the judge's forward and its gradient against the nearer of the
   * judge's own two from that input (the reference's arithmetic, float32 throughout), relative (Infinity where not finite); headRowsMissing: batch rows with no finite record. Empty
   * where nothing is recorded (CUDA, for now; a run of one step). Where the layers' record is taken (train_api.h,
   * version 6): layerForwardError, layerBackwardError, the worst row's recorded value against the judge's own
   * computation of it from the record's link before it, over the layers; layerRowsMissing, (layer, row) pairs without
   * a finite record; recordKinds, per MLP and attention kind the trajectory reading of the step judged from the record's gradient.
   */
  trajectory: {
    recorded: boolean; outOfReach: number; kinds: Record<string, number>; headInputError: number; headGradError: number; headRowsMissing: number;
    layerForwardError?: number; layerBackwardError?: number; layerSmallTerms?: number; layerSmallEnergy?: number; mlpGradSmallTerms?: number; layerRowsMissing?: number; recordKinds?: Record<string, number>;
  }[];
  /** Wall-clock seconds of each phase of the run, in order (timing capture only). */
  phaseSeconds?: Record<string, number>;
}

export interface NativeComparison {
  logitsRelError: number;
  updateRelError: number;
  maxTensorRelError: number;
  /** Per kind of tensor (name with the layer index starred): the update's relative error pooled over the layers. */
  kindRelErrors: Record<string, number>;
  /**
   * Per group of tensors (attention, mlp, norm, embedding, head): the run's loss on the last
   * batch and on the probe minus the loss with that group's tensors replaced by the reference's
   * (positive: this run's group left the loss higher). Empty when the memory changed after the kill.
   */
  groupShifts: Record<string, { lastBatch: number; probe: number }>;
  /**
   * Per timed batch: this run's lm_head minus the reference's, projected on the unit direction of
   * that batch's own dense loss-head gradient part (P^T H / N less p_mean h_mean^T, less the mean
   * of every timed batch's; at the run's final weights), over the norm of the reference's lm_head update. Empty when the memory changed after the kill.
   */
  headAlignment: number[];
  /**
   * Per timed batch: lm_head's difference from the reference's read one position at a time, along
   * each position's own rank-one part of that batch's dense gradient ((p_i - p_mean) (h_i - h_mean)^T),
   * as the excess of its energy over the same with mismatched positions (sum a^2 / sum b^2 - 1).
   * Empty when the memory changed after the kill.
   */
  headPositionExcess: number[];
  /**
   * Per timed batch: the same reading for every linear layer of the decoder, pooled over the layers
   * per kind (a_i = dy_i^T dW x_i with the layer's input x_i and output gradient dy_i, both centred
   * on their four-row block); the kind with the largest excess. Empty when the memory changed after the kill.
   */
  layerPositions: { kind: string; excess: number }[];
  /** Per timed batch, per kind: the difference's energy between mismatched positions against a white difference's of the same size, 1 (informational). */
  layerPairEnergy: Record<string, number>[];
  /** Per kind: the mean of layerPairEnergy over the timed batches less 1, damped where the kind's difference is rounding jitter. */
  layerPairExcess: Record<string, number>;
  /** Per timed batch: the same for lm_head (informational). */
  headPairEnergy: number[];
  changedShare: number;
  referenceChangedShare: number;
  frozen: string[];
  /** Seconds of the comparison's parts (compare_weights, compare_positions, compare_groups); they add up to about `compare`. */
  phaseSeconds: Record<string, number>;
  /** The parameter or logits memory changed after the runner had been killed. */
  changedAfterKill: boolean;
}

export interface NativeEvaluator {
  run(
    o: {
      argv: string[];
      /** The timed run's initialisation. */
      seed: number;
      /** Warmup's initialisation, drawn independently of `seed`. */
      warmupSeed: number;
      seqLen: number;
      warmupTokens: Int32Array;
      timedTokens: Int32Array;
      /** Created; receives the runner's stdout and stderr. */
      logPath: string;
      /** The official baseline's run: its probe loss at `seed`'s initialisation is measured (before the runner starts), and its steps are not recorded or replayed (nothing judges them). */
      reference: boolean;
    },
    onProgress?: (phase: string) => void,
  ): Promise<NativeRunOutcome>;
  /** Every later run starts from this checkpoint (planned by planCheckpointLoad) instead of a seeded random initialisation. */
  loadCheckpoint(entries: WeightEntry[]): Promise<void>;
  keepLast(): number;
  compareLastWith(keptId: number, seed: number): Promise<NativeComparison>;
  release(keptId: number): void;
  /** Frees the evaluator's memory now; no call may follow. */
  close(): void;
}

export interface NativeAddon {
  /** The in-process model, for tests against the reference implementation and checkpoint checks only. */
  testing: {
    Model: new (o: ModelOptions) => NativeModel;
    /** Throws as the engine does ('user': a user-input error, 'bug': a c10::Error, 'alloc': std::bad_alloc), from a worker thread when async. */
    nativeError(kind: 'user' | 'bug' | 'alloc', async: boolean): Promise<void> | undefined;
  };
  Evaluator: new (o: EvaluatorOptions) => NativeEvaluator;
  info(): { torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; sdpa: boolean };
  numParameters(c: Qwen2Config): number;
  /** The model's parameters, in order, without building it. */
  parameterSpecs(c: Qwen2Config): ParameterSpec[];
  /** The fd on which bubblewrap must report the sandbox's PID 1 (--info-fd): the runner's start-up contract. */
  runnerInfoFd: number;
}

let cached: NativeAddon | undefined;

/** Loads build/Release/tournament.node, or explains how to build it. */
export function loadAddon(): NativeAddon {
  if (cached) return cached;
  try {
    // eslint-disable-next-line @typescript-eslint/no-var-requires
    cached = require('bindings')({ bindings: 'tournament', module_root: PROJECT_ROOT }) as NativeAddon;
    return cached;
  } catch (e) {
    const msg = (e as Error).message.split('\n')[0];
    if (/Could not locate the bindings file/.test((e as Error).message)) {
      throw new UserError('the native engine is not built', {
        hint: 'run `npm run build` (needs cmake, a C++17 compiler and libtorch: apt-get install build-essential cmake libtorch-dev)',
      });
    }
    throw new UserError(`the native engine failed to load: ${msg}`, {
      hint: /libtorch|libc10|\.so/.test(msg)
        ? 'a libtorch shared library is missing at run time: install libtorch-dev or rebuild with `npm run build` against the libtorch you have'
        : 'rebuild it with `npm run build`',
    });
  }
}

/** The `code` the addon gives an error that the caller's input caused (tournament::UserInputError). */
export const USER_INPUT_CODE = 'ERR_TOURNAMENT_USER_INPUT';

/**
 * Runs a native call. An error the engine marks as caused by the input (a
 * bad checkpoint, config or option) becomes a UserError with the engine's
 * message; any other is an engine bug: an Error with the engine's message,
 * this call's JS stack and the original as its cause, which the CLI prints
 * as an internal error (the stack with --verbose).
 */
export async function native<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof UserError) throw e;
    const message = e instanceof Error ? e.message : String(e);
    if ((e as { code?: unknown } | null)?.code === USER_INPUT_CODE) throw new UserError(`${what}: ${message}`);
    throw new Error(`${what}: ${message}`, { cause: e });
  }
}
