// How far a run stands from rejection: each check a threshold governs, as a
// multiple of its threshold. Calibrate judges its margins by it, and every
// verdict carries its run's largest, so that a passing run shows how close it came.
import type { ThresholdValues } from '../config/hparams';
import type { RunReport } from './types';

/** The checks a threshold governs, by threshold key, with how to read each off a run. */
type Checks = NonNullable<RunReport['checks']>;
export const CHECKS: { key: Exclude<keyof ThresholdValues, 'min_changed_share_ratio'>; name: string; value: (k: Checks) => number }[] = [
  { key: 'probe_loss_abs', name: 'probe loss', value: (k) => Math.abs(k.probe_loss - k.reference_probe_loss) },
  { key: 'cell_loss_abs', name: 'cell loss', value: (k) => k.cell_loss_deviation },
  { key: 'batch_loss_abs', name: 'batch loss', value: (k) => k.batch_loss_shift },
  { key: 'logits_rel_error', name: 'logits', value: (k) => k.logits_rel_error },
  { key: 'update_rel_error', name: 'update error', value: (k) => k.update_rel_error },
  { key: 'kind_update_rel_error', name: 'update error of one kind', value: (k) => k.max_kind_rel_error },
  { key: 'mlp_update_rel_error', name: 'update error of one MLP kind', value: (k) => k.max_mlp_kind_rel_error },
  { key: 'mlp_pair_energy_excess', name: 'an MLP kind along the data between mismatched positions', value: (k) => k.max_mlp_pair_excess ?? 0 },
  { key: 'group_loss_shift_abs', name: 'loss shift of one group', value: (k) => k.max_group_shift },
  { key: 'head_alignment_abs', name: 'lm_head along a batch\'s gradient', value: (k) => k.max_head_alignment },
  { key: 'head_position_excess', name: 'lm_head along single positions\' gradients', value: (k) => k.max_head_position_excess },
  { key: 'head_position_excess_last', name: 'lm_head along the last batch\'s single positions\' gradients', value: (k) => k.last_head_position_excess },
  { key: 'layer_position_excess', name: 'a linear layer along single positions\' gradients', value: (k) => k.max_layer_position_excess },
  { key: 'layer_position_excess_last', name: 'a linear layer along the last batch\'s single positions\' gradients', value: (k) => k.last_layer_position_excess },
  { key: 'head_trajectory_excess', name: 'lm_head\'s steps against the judge\'s own', value: (k) => k.max_head_trajectory ?? 0 },
  { key: 'mlp_trajectory_excess', name: 'an MLP kind\'s steps against the judge\'s own', value: (k) => k.max_mlp_trajectory ?? 0 },
  { key: 'attention_trajectory_excess', name: 'an attention kind\'s steps against the judge\'s own', value: (k) => k.max_attention_trajectory ?? 0 },
  { key: 'head_input_error', name: 'the loss head\'s recorded input against the judge\'s forward', value: (k) => k.max_head_input_error ?? 0 },
  { key: 'head_grad_error', name: 'the loss head\'s recorded gradient against the judge\'s from that input', value: (k) => k.max_head_grad_error ?? 0 },
  { key: 'layer_forward_error', name: 'a layer\'s recorded forward against the judge\'s from the record before it', value: (k) => k.max_layer_forward_error ?? 0 },
  { key: 'layer_backward_error', name: 'a layer\'s recorded backward against the judge\'s from the record before it', value: (k) => k.max_layer_backward_error ?? 0 },
  { key: 'layer_small_term_share', name: 'an MLP link\'s small-term part missing from the layers\' record', value: (k) => k.max_layer_small_terms ?? 0 },
  { key: 'layer_small_term_energy', name: 'an MLP link\'s error in excess along its small terms\' weight vectors', value: (k) => k.max_layer_small_energy ?? 0 },
  { key: 'mlp_record_trajectory_excess', name: 'an MLP kind\'s steps against the judge\'s from the record\'s gradient', value: (k) => k.max_mlp_record_trajectory ?? 0 },
  { key: 'attention_record_trajectory_excess', name: 'an attention kind\'s steps against the judge\'s from the record\'s gradient', value: (k) => k.max_attention_record_trajectory ?? 0 },
  { key: 'mlp_grad_small_term_excess', name: 'the MLP weights landing on the judge\'s steps without a small-term part of the gradient', value: (k) => k.max_mlp_grad_small_terms ?? 0 },
];

/** The failure codes a threshold decides; any other failure rejects a run whatever the thresholds. */
export const THRESHOLD_CODES = new Set(['probe_loss', 'cell_loss', 'batch_loss', 'logits', 'update_error', 'group_loss', 'head_gradient', 'head_positions', 'layer_positions', 'trajectory', 'loss_head', 'layer_record', 'changed_share']);

export interface RunMeasure {
  case: string;
  seed: number;
  /** Each check as a multiple of its threshold (> 1 rejects); Infinity for a failure no threshold decides. */
  worst: number;
  /** The check behind `worst`. */
  worstCheck: string;
}

/**
 * One run against thresholds `t`: its largest check / threshold. An honest
 * run is measured by each check's magnitude: the batch-loss check is one-sided
 * (only loss left above the reference fails), but an honest run that trains a
 * little more on these seeds (a negative shift) can as well train a little
 * less on the next ones, so its distance from the threshold is the size of
 * the shift, whatever its sign.
 */
export function measureRun(caseId: string, r: RunReport, t: ThresholdValues, honest = false): RunMeasure {
  const hard = r.failures.find((f) => !THRESHOLD_CODES.has(f.code));
  if (!r.checks || hard) return { case: caseId, seed: r.seed, worst: Infinity, worstCheck: hard?.code ?? 'no checks' };
  const k = r.checks;
  // A limit of null is not applied on this kind of device.
  const ratios: [string, number][] = CHECKS.flatMap((c): [string, number][] => {
    const limit = t[c.key];
    return limit === null ? [] : [[c.name, (honest ? Math.abs(c.value(k)) : c.value(k)) / limit]];
  });
  if (k.frozen_tensors.length > 0) ratios.push(['frozen', Infinity]);
  // The changed-share check allows a shortfall of 1 - min_changed_share_ratio below the reference's share: the share of that used.
  const shortfall = Math.max(0, 1 - k.changed_share / k.reference_changed_share);
  ratios.push(['changed share', shortfall === 0 ? 0 : shortfall / (1 - t.min_changed_share_ratio)]);
  const [worstCheck, worst] = ratios.reduce((a, b) => (b[1] > a[1] || Number.isNaN(b[1]) ? b : a));
  return { case: caseId, seed: r.seed, worst: Number.isNaN(worst) ? Infinity : worst, worstCheck };
}
