// The human reports: a verdict, a calibration.
import { THRESHOLD_KEYS, type ThresholdValues } from '../config/hparams';
import type { CalibrationResult } from './calibrate';
import type { Verdict } from './types';

export function formatVerdict(v: Verdict, o: { submission: string; device: string; peakTflops?: number }): string {
  const f = (x: number | null | undefined, d = 1) => (x === null || x === undefined ? '-' : x.toFixed(d));
  const lines = [`submission   ${o.submission} on ${o.device} (${(v.parameters / 1e6).toFixed(2)}M parameters)`];
  const sb = v.sandbox;
  lines.push(`sandbox      ${sb.bwrap} as uid ${sb.uid}${sb.root_because ? ` (root: ${sb.root_because}; no process limit)` : ''}`);
  v.runs.forEach((r, i) => {
    const ref = v.reference_runs[i];
    const c = r.checks;
    lines.push(
      `run ${i + 1}        ${r.ok ? 'ok  ' : 'FAIL'} ${f(r.tokens_per_second)} tokens/s in ${f(r.seconds, 3)} s` +
        ` (reference ${f(ref?.tokens_per_second)} tokens/s; harness overhead ${f(r.overhead_seconds, 2)} s; seed ${r.seed})`,
    );
    if (r.step_seconds !== null) {
      const gib = r.reported_peak_memory_bytes !== null ? (r.reported_peak_memory_bytes / 2 ** 30).toFixed(2) : '-';
      lines.push(`             step ${(r.step_seconds * 1000).toFixed(1)} ms, last loss ${f(r.reported_loss, 4)}, peak memory ${gib} GiB (both as the runner reports them)`);
    }
    if (c) {
      lines.push(
        `             probe loss ${c.probe_loss.toFixed(4)} (reference ${c.reference_probe_loss.toFixed(4)}), logits rel. err ${c.logits_rel_error.toPrecision(3)},` +
          ` update rel. err ${c.update_rel_error.toPrecision(3)} (worst kind ${c.max_kind_rel_error.toPrecision(3)}), changed ${(c.changed_share * 100).toFixed(1)}% (reference ${(c.reference_changed_share * 100).toFixed(1)}%)`,
      );
      if (c.trajectory.length > 0) {
        lines.push(`             steps against the judge's own: lm_head ${c.max_head_trajectory.toPrecision(3)}, MLP ${c.max_mlp_trajectory.toPrecision(3)}, attention ${c.max_attention_trajectory.toPrecision(3)} noise units`);
        lines.push(`             loss head's record against the judge's: input ${c.max_head_input_error.toPrecision(3)}, gradient ${c.max_head_grad_error.toPrecision(3)} relative`);
        if (c.max_layer_forward_error !== undefined) {
          lines.push(`             layers' record against the judge's from the record: forward ${c.max_layer_forward_error.toPrecision(3)}, backward ${(c.max_layer_backward_error ?? 0).toPrecision(3)} relative, small terms missing ${(c.max_layer_small_terms ?? 0).toPrecision(3)}, their energy ${(c.max_layer_small_energy ?? 0).toPrecision(3)}; MLP steps from its gradient ${(c.max_mlp_record_trajectory ?? 0).toPrecision(3)} noise units, against a cheat's without small terms (elements' ratio) ${(c.max_mlp_grad_small_terms ?? 0).toPrecision(3)}`);
        }
      }
    }
    if (r.largest_check) {
      const m = r.largest_check;
      const closest = m.of_limit === 0 ? 'none (every check exactly 0)'
        : m.of_limit === null ? `${m.check} (no limit decides it)`
        : `${m.check} at ${m.of_limit.toFixed(2)} of it`;
      lines.push(`             closest to its limit: ${closest}`);
    }
  });
  if (v.accepted) {
    lines.push(`tokens/s     ${f(v.tokens_per_second)} (median of ${v.runs.length} run${v.runs.length === 1 ? '' : 's'})`);
    lines.push(`MFU          ${v.mfu !== null ? `${(v.mfu * 100).toFixed(1)}% of ${o.peakTflops} TFLOP/s (6 x params x tokens)` : 'n/a (no peak for this device; pass --peak-tflops)'}`);
    lines.push('verdict      ACCEPTED: trained like the reference in every run');
  } else {
    lines.push('verdict      REJECTED');
    for (const r of v.reasons) lines.push(`  - ${r}`);
  }
  return lines.join('\n');
}

/** The human report of a calibration: per-run table, per-case verdict, thresholds in force and recommended. */
export function formatCalibration(r: CalibrationResult, o: { hparamsFile: string; written: boolean }): string {
  const f = (x: number | null | undefined) => (x === undefined || x === null ? '-' : Number.isFinite(x) ? x.toPrecision(3) : String(x));
  const t = r.thresholds_in_force;
  const values = (v: ThresholdValues) => THRESHOLD_KEYS.map((k) => `${k} ${v[k]}`).join(', ');
  const lines = [
    `calibration on ${r.device_kind} (${r.device}), ${(r.parameters / 1e6).toFixed(2)}M parameters, ${r.steps} steps of ${r.batch_size} x ${r.seq_len} after ${r.warmup_steps} warmup step(s), seeds ${r.seeds.join(', ')}, one reference run per seed`,
    `thresholds in force (verification.${r.hparams_key}): ${values(t)}`,
    '',
    '| case | seed | probe loss - ref | moved by ref | cell loss dev. | batch loss | logits rel. err | update rel. err | worst kind rel. err | max tensor rel. err | changed / ref | frozen | run s | largest check / threshold | failures |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
  ];
  for (const x of r.runs) {
    const k = x.checks;
    const codes = x.failures.map((y) => y.code).join(', ') || '-';
    lines.push(
      k
        ? `| ${x.case} | ${x.seed} | ${f(k.probe_loss - k.reference_probe_loss)} | ${f(k.reference_probe_loss - k.initial_probe_loss)} | ${f(k.cell_loss_deviation)} | ${f(k.batch_loss_shift)} | ${f(k.logits_rel_error)} | ${f(k.update_rel_error)} | ${f(k.max_kind_rel_error)} ${k.worst_kind ?? ''} | ${f(k.max_tensor_rel_error)} | ${f(k.changed_share / k.reference_changed_share)} | ${k.frozen_tensors.length} | ${f(x.seconds)} | ${f(x.worst)} (${x.worst_check}) | ${codes} |`
        : `| ${x.case} | ${x.seed} | failed: ${x.failures.map((y) => `${y.code}: ${y.message}`).join('; ')} | | | | | | | | | | | ${f(x.worst)} | ${codes} |`,
    );
  }
  lines.push('', '| case | kind | share of the work skipped | runs | worst run: largest check / threshold | verdict |', '|---|---|---|---|---|---|');
  for (const c of r.cases) {
    const verdict = c.honest ? (c.ok ? 'accepted, 2x margin' : 'NOT within 2x margin') : c.ok ? 'rejected in every run' : 'NOT rejected in every run';
    lines.push(`| ${c.name} | ${c.honest ? 'honest' : 'cheat'} | ${c.skipped === null ? '-' : `${(c.skipped * 100).toFixed(2)}%`} | ${c.runs} | ${f(c.worst)} (${c.worst_check}${c.worst_seed === null ? '' : `, seed ${c.worst_seed}`}) | ${verdict} |`);
  }
  lines.push('');
  if (r.holds) lines.push(`verdict: the thresholds in force HOLD on ${r.device_kind}: every honest run within half of every threshold, every cheat rejected in every run`);
  else lines.push(`verdict: the thresholds in force DO NOT HOLD on ${r.device_kind}:`, ...r.problems.map((p) => `  - ${p}`));
  const rec = r.recommended;
  lines.push('', `recommended (verification.${r.hparams_key}): ${values(rec.thresholds)}`);
  for (const p of rec.problems) lines.push(`  - ${p}`);
  lines.push(`basis: ${rec.basis}`);
  lines.push(
    o.written
      ? `written to ${o.hparamsFile} (verification.${r.hparams_key}), with the calibration record (${r.device_kind}, ${r.date})`
      : `not written: --write stores the recommended thresholds, the basis and the calibration record in ${o.hparamsFile}`,
  );
  return lines.join('\n');
}
