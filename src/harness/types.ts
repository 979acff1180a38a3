// The evaluation harness's public types: what a run and a verdict look like.
// A failed check or a misbehaving runner is a Failure with a stable `code`;
// scripts and tests match on the code, people read the message.
import type { ThresholdValues } from '../config/hparams';

/** Every way a run can fail, as the harness and the engine name it. */
export const FAILURE_CODES = [
  'compile', // the submission did not compile (or was refused before compiling: size, encoding)
  'api_version', // built against another TOURNAMENT_TRAIN_API_VERSION or missing the entry points
  'crash', // the runner died (signal, abort, exception) or exited before DONE
  'timeout', // a phase ran past its time limit
  'oom', // out of memory (host or device)
  'protocol', // garbage, an unexpected or an out-of-turn message on the control channel
  'tokens', // trained on a different number of tokens than served
  'probe_loss', // the final weights' loss on the held-out probe batch is off the reference's
  'cell_loss', // the final weights' loss on part of a row of a timed batch stands out above the reference's: tokens left untrained
  'batch_loss', // the final weights' mean loss on a timed batch is above the reference's: part of every row left untrained
  'logits', // the returned last-step logits are off the reference's (or missing / wrong shape)
  'frozen', // parameter tensors that the reference updated did not change
  'changed_share', // too small a share of the parameters changed
  'update_error', // the weight update is too far from the reference's
  'group_loss', // one group of tensors swapped for the reference's moves the last batch's loss too far
  'head_gradient', // lm_head differs from the reference's along one timed batch's own loss-head gradient
  'head_positions', // lm_head differs from the reference's along single positions' own loss-head gradients
  'layer_positions', // a decoder linear layer differs from the reference's along single positions' own gradients
  'trajectory', // lm_head's or an MLP kind's timed steps land too far from the judge's own steps from the weights recorded before each
  'unreachable', // a recorded step moved weights further than any AdamW step can: states no training made
  'loss_head', // the loss head's recorded input or gradient (train_api.h, version 5) is missing, or off the judge's own
  'layer_record', // a layer's record (train_api.h, version 6) is missing, or a recorded value is not what the layer computes from the record's value before it
  'unrecorded', // the weights after a timed step were not recorded (data.step_done() not called) or are not finite
  'late_write', // the parameter or logits memory changed after the runner was killed
  'rank_divergence', // several ranks: at DONE a rank's parameters differ from rank 0's (the ones verified)
] as const;

export type FailureCode = (typeof FAILURE_CODES)[number];

/** A failure code the engine reported, checked: an unknown one is the engine's bug, not the submission's. */
export function asFailureCode(code: string): FailureCode {
  if ((FAILURE_CODES as readonly string[]).includes(code)) return code as FailureCode;
  throw new Error(`the engine reported an unknown failure code ${JSON.stringify(code)}`);
}

export interface Failure {
  code: FailureCode;
  message: string;
}

/** One timed run of a submission (or of the reference). */
export interface RunReport {
  seed: number;
  ok: boolean;
  failures: Failure[];
  /** Trusted clock, GO sent to DONE received; null when the run never reached DONE. */
  seconds: number | null;
  tokens: number;
  tokens_per_second: number | null;
  /** Outside the timed region: spawn, plugin load, warmup, reset, verification. */
  overhead_seconds: number;
  /** Of the overhead: copying the benchmark's checkpoint into the parameter memory; null when runs start from random weights. */
  checkpoint_seconds: number | null;
  /** Wall-clock seconds of each phase of the run (spawn, start_to_ready, warmup, timed, kill, fingerprint, probe_loss, ...). */
  phase_seconds?: Record<string, number>;
  /** Seconds per optimizer step on the trusted clock. */
  step_seconds: number | null;
  /** What the runner says: its last loss and peak memory. Informational, never trusted. */
  reported_loss: number | null;
  reported_peak_memory_bytes: number | null;
  /** The check this run came closest to failing on, as a multiple of its limit (over 1 fails; null: a failure no limit decides, e.g. `frozen`). Absent for the reference's runs and runs that did not complete. */
  largest_check?: { check: string; of_limit: number | null };
  /** The measurements behind the verdict (null when the run failed before them). */
  checks: {
    probe_loss: number;
    reference_probe_loss: number;
    /** The reference's probe loss at initialisation: how far training moved it. */
    initial_probe_loss: number;
    /** Largest (cell loss - reference cell loss) above its batch's lower quartile, over the timed batches (cellLossChecks). */
    cell_loss_deviation: number;
    /** Largest mean (loss - reference loss) of a timed batch (cellLossChecks). */
    batch_loss_shift: number;
    logits_rel_error: number;
    update_rel_error: number;
    max_tensor_rel_error: number;
    /** The largest update error of one kind of tensor pooled over the layers (worstKind). */
    max_kind_rel_error: number;
    worst_kind: string | null;
    /** The same over the MLP's kinds (gate, up, down weights). */
    max_mlp_kind_rel_error: number;
    /** Every kind's pooled update error. */
    kind_rel_errors: Record<string, number>;
    /** The largest |last-batch loss shift - probe loss shift| of one group of tensors swapped for the reference's (worstGroup). */
    max_group_shift: number;
    worst_group: string | null;
    /** Every group's shifts: the run's loss minus the loss with the group's tensors from the reference, on the last batch and on the probe. */
    group_shifts: Record<string, { last_batch: number; probe: number }>;
    /** The largest |head_alignment| (worstHeadAlignment). */
    max_head_alignment: number;
    /** Per timed batch: this run's lm_head minus the reference's along that batch's dense loss-head gradient, over the reference's lm_head update. */
    head_alignment: number[];
    /** The largest head_position_excess of the timed batches before the last (0 at least). */
    max_head_position_excess: number;
    /** The last timed batch's head_position_excess (0 at least), judged against its own limit. */
    last_head_position_excess: number;
    /** Per timed batch: the energy of lm_head's difference along each position's own rank-one gradient part over that along mismatched pairs, less 1. */
    head_position_excess: number[];
    /** The largest layer_position_excess of the timed batches before the last (0 at least). */
    max_layer_position_excess: number;
    /** The last timed batch's layer_position_excess (0 at least), judged against its own limit. */
    last_layer_position_excess: number;
    /** Per timed batch: the decoder's linear layers read as head_position_excess, the worst kind (pooled over the layers) and its excess. */
    layer_positions: { kind: string; excess: number }[];
    /** Per timed batch, per kind: energy of the weight difference between mismatched positions against a white difference's of the same size, 1 (informational, no threshold). */
    layer_pair_energy?: Record<string, number>[];
    /** The largest of the MLP kinds' mismatched-pair energy, mean over the timed batches, less 1 (0 where not read). */
    max_mlp_pair_excess: number;
    /** Per timed batch: the same for lm_head (informational, no threshold). */
    head_pair_energy?: number[];
    /** The largest trajectory reading (worstTrajectory): how far a step of one kind of tensor lands from the judge's own, in units of rounding-size gradient noise; 0 where not recorded (CUDA). Information: lm_head's and the MLP's kinds' are judged. */
    max_trajectory_error: number;
    /** Where it is: the step (1-based) and the kind of tensor. */
    worst_trajectory: { step: number; kind: string } | null;
    /** lm_head's largest trajectory reading over the steps (worstTrajectory of lm_head), judged by head_trajectory_excess; 0 where not recorded. */
    max_head_trajectory: number;
    /** The MLP's kinds' largest trajectory reading over the steps, judged by mlp_trajectory_excess; 0 where not recorded. */
    max_mlp_trajectory: number;
    /** The attention's kinds' (q, k, v, o) largest trajectory reading, judged by attention_trajectory_excess; 0 where not recorded. */
    max_attention_trajectory: number;
    /** The loss head's record: the largest relative error over the timed steps of its input against the judge's forward, judged by head_input_error; 0 where not recorded. */
    max_head_input_error: number;
    /** The same for its gradient against the nearer of the judge's own two from the recorded input (the reference's arithmetic, float32 throughout), judged by head_grad_error; 0 where not recorded. */
    max_head_grad_error: number;
    /** The layers' record: the largest over the timed steps and layers of a recorded forward value against the judge's own computation of it from the record's link before it, judged by layer_forward_error; absent where not recorded. */
    max_layer_forward_error?: number;
    /** The same for the backward's recorded values, judged by layer_backward_error. */
    max_layer_backward_error?: number;
    /** The largest share of an MLP product's small-term part that a recorded value lacks, judged by layer_small_term_share. */
    max_layer_small_terms?: number;
    /** The largest energy of an MLP link's error along its small terms' vectors against the rest's, judged by layer_small_term_energy. */
    max_layer_small_energy?: number;
    /** The MLP weights' elements that only the judge's step without a small-term part of the gradient gives over those only its whole step gives (the largest over the parts), judged by mlp_grad_small_term_excess. */
    max_mlp_grad_small_terms?: number;
    /** The MLP's kinds' largest trajectory reading with each step judged from the record's gradient, judged by mlp_record_trajectory_excess; 0 where not recorded. */
    max_mlp_record_trajectory?: number;
    /** The same for the attention's kinds (q, k, v, o), judged by attention_record_trajectory_excess. */
    max_attention_record_trajectory?: number;
    /** Per timed step: every kind's trajectory error (empty where not recorded). */
    trajectory: Record<string, number>[];
    changed_share: number;
    reference_changed_share: number;
    frozen_tensors: string[];
  } | null;
}

export interface Verdict {
  accepted: boolean;
  /** Parameters of the benchmark's model (what MFU counts). */
  parameters: number;
  /** Every failure of every run, prefixed by the run. Empty when accepted. */
  reasons: string[];
  runs: RunReport[];
  reference_runs: RunReport[];
  /** Median tokens/s over the runs when accepted, else null. */
  tokens_per_second: number | null;
  mfu: number | null;
  /** The limits the runs were judged by (hparams.verification.cpu or .cuda; null: not applied on this kind of device). */
  limits: ThresholdValues;
  /** How the runners were sandboxed: the bwrap binary and the host uid they ran as. */
  sandbox: { bwrap: string; uid: number; root_because: string | null };
}
