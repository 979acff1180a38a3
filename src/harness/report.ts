// The human report of a verdict.
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
          ` update rel. err ${c.update_rel_error.toPrecision(3)}, changed ${(c.changed_share * 100).toFixed(1)}% (reference ${(c.reference_changed_share * 100).toFixed(1)}%)`,
      );
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
