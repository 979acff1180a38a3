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
  /** The final weights' loss on each row of the last timed batch. */
  lastBatchRowLosses: number[];
  /** Wall-clock seconds of each phase of the run, in order (timing capture only). */
  phaseSeconds?: Record<string, number>;
}

export interface NativeComparison {
  logitsRelError: number;
  updateRelError: number;
  maxTensorRelError: number;
  changedShare: number;
  referenceChangedShare: number;
  frozen: string[];
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
      /** Measure the probe loss at `seed`'s initialisation (before the runner starts). */
      measureInitialProbe: boolean;
    },
    onProgress?: (phase: string) => void,
  ): Promise<NativeRunOutcome>;
  keepLast(): number;
  compareLastWith(keptId: number, seed: number): Promise<NativeComparison>;
  release(keptId: number): void;
  /** Frees the evaluator's memory now; no call may follow. */
  close(): void;
}

export interface NativeAddon {
  /** The in-process model, for tests against the reference implementation and checkpoint checks only. */
  testing: { Model: new (o: ModelOptions) => NativeModel };
  Evaluator: new (o: EvaluatorOptions) => NativeEvaluator;
  info(): { torchVersion: string; cudaAvailable: boolean; cudaDeviceCount: number; sdpa: boolean };
  numParameters(c: Qwen2Config): number;
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

/** Runs a native call, turning its errors into UserErrors that keep the engine's message. */
export async function native<T>(what: string, fn: () => T | Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    if (e instanceof UserError) throw e;
    throw new UserError(`${what}: ${(e as Error).message}`);
  }
}
