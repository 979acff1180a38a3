// Calibration: the verification noise floor of this device and benchmark, and
// whether the thresholds in force hold on it. Honest variants and cheats (the
// plugins in local_test/calibration/, the baseline itself, drop cases built
// from drop_rows.cpp) run against one reference run per seed; every run's
// checks are set against the thresholds. The thresholds hold when every honest
// run stays within HALF of every threshold (2x margin) and every cheat is
// rejected in every run. From the same runs comes a recommendation: each
// check's threshold between 2x the worst honest run and the closest cheat.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { calibrationFor, parseHparams, THRESHOLD_KEYS, thresholdValues, TRAJECTORY_KEYS, type CalibrationRecord, type Hparams, type Thresholds, type ThresholdValues } from '../config/hparams';
import { UserError } from '../errors';
import { BASELINE } from '../submission/source';
import { PROJECT_ROOT } from '../util/paths';
import { evaluateSubmissions, type EvaluateManyOptions } from './evaluate';
import { CHECKS, measureRun, THRESHOLD_CODES, type RunMeasure } from './margin';
import type { RunReport } from './types';

/** The calibration plugins: honest variants and cheats that ship with the product. */
export const CALIBRATION_DIR = path.join(PROJECT_ROOT, 'local_test', 'calibration');

/** What `tournament calibrate` runs without --cases: every honest variant, the coarse cheats, and the skipped-work curve. */
export const DEFAULT_CASES = [
  'baseline', 'honest_fp32_loss', 'honest_fp32_head', 'honest_math_attention', 'honest_manual_adamw', 'honest_grad_accum', 'honest_split_k_mlp',
  'skip_last_step', 'freeze_layers', 'stale_logits', 'drop_early_rows',
  'drop:last:1', 'drop:last:2', 'drop:last:4', 'drop:last:8', 'drop:every:1', 'drop:every:2', 'drop:every:4',
];

export interface CalibrationCase {
  /** As given on the command line. */
  id: string;
  /** For people. */
  name: string;
  file: string;
  env: Record<string, string>;
  /** Honest: must pass with a 2x margin. Otherwise a cheat: must be rejected in every run. */
  honest: boolean;
  /** Share of the timed run's training work it skips (the drop cases), else null. */
  skipped: number | null;
}

/**
 * A case by its name: `baseline`, `baseline-1-thread`, `drop:every:K` or
 * `drop:last:K` (K rows of every batch, or of the last batch only, never
 * trained on), a plugin name in local_test/calibration/, or a .cpp path. A
 * plugin is a cheat when its header says `// expect: <failure codes>`, else
 * honest (a miner's own variant needs no header).
 */
export function resolveCase(id: string, o: { batchSize: number; steps: number; scratch: string }): CalibrationCase {
  if (id === 'baseline') return { id, name: 'baseline again', file: BASELINE, env: {}, honest: true, skipped: null };
  if (id === 'baseline-1-thread') return { id, name: 'baseline, 1 CPU thread', file: BASELINE, env: { OMP_NUM_THREADS: '1' }, honest: true, skipped: null };
  const drop = /^drop:(every|last):(\d+)$/.exec(id);
  if (drop) {
    const k = Number(drop[2]);
    const every = drop[1] === 'every';
    // At least one row must stay trained, or the loss is empty.
    if (!(k >= 1 && k < o.batchSize)) throw new UserError(`case ${id}: K must be in [1, ${o.batchSize - 1}] (the batch has ${o.batchSize} rows)`);
    const file = path.join(o.scratch, `drop_${drop[1]}_${k}.cpp`);
    const src = fs.readFileSync(path.join(CALIBRATION_DIR, 'drop_rows.cpp'), 'utf8');
    fs.mkdirSync(o.scratch, { recursive: true });
    fs.writeFileSync(file, `#define DROP_ROWS ${k}\n#define DROP_MODE ${every ? 0 : 1}\n${src}`);
    return {
      id,
      name: `${k} row(s) of ${every ? 'every batch' : 'the last batch'} untrained`,
      file,
      env: {},
      honest: false,
      skipped: every ? k / o.batchSize : k / (o.batchSize * o.steps),
    };
  }
  const file = id.endsWith('.cpp') ? path.resolve(id) : path.join(CALIBRATION_DIR, `${id}.cpp`);
  if (!fs.existsSync(file)) {
    const known = fs.readdirSync(CALIBRATION_DIR).filter((f) => f.endsWith('.cpp')).map((f) => path.basename(f, '.cpp'));
    throw new UserError(`case ${id}: no such plugin (${file})`, { hint: `cases: baseline, baseline-1-thread, drop:every:K, drop:last:K, a .cpp path, or one of ${known.join(', ')}` });
  }
  const expect = /^\/\/ expect: ([a-z_|]+)/m.exec(fs.readFileSync(file, 'utf8'));
  return { id, name: path.basename(file, '.cpp'), file, env: {}, honest: !expect || expect[1] === 'pass', skipped: null };
}

export interface CaseSummary {
  id: string;
  name: string;
  honest: boolean;
  skipped: number | null;
  runs: number;
  /** Honest: the run furthest from passing with margin (largest); cheat: the run closest to passing (smallest). */
  worst: number;
  worst_check: string;
  worst_seed: number | null;
  /** Honest: every run within half a threshold; cheat: rejected in every run. */
  ok: boolean;
}

export function summarise(c: Pick<CalibrationCase, 'id' | 'name' | 'honest' | 'skipped'>, runs: RunReport[], t: ThresholdValues, wanted: number): CaseSummary {
  const ms = runs.map((r) => measureRun(c.id, r, t, c.honest));
  const pick = ms.reduce<RunMeasure | null>((a, m) => (!a || (c.honest ? m.worst > a.worst : m.worst < a.worst) ? m : a), null);
  const complete = runs.length === wanted;
  const ok = complete && ms.every((m) => (c.honest ? m.worst <= 0.5 : m.worst > 1));
  return {
    id: c.id, name: c.name, honest: c.honest, skipped: c.skipped, runs: runs.length,
    worst: pick?.worst ?? NaN, worst_check: pick?.worstCheck ?? (complete ? '-' : 'no run'), worst_seed: pick?.seed ?? null, ok,
  };
}

/** Why thresholds fail the margin verdict, one line per case that fails it; empty when they hold. */
export function marginProblems(cases: CaseSummary[]): string[] {
  const f = (x: number) => String(Number.isFinite(x) ? Number(x.toPrecision(2)) : x);
  return cases.filter((c) => !c.ok).map((c) =>
    c.honest
      ? `honest ${c.name}: ${Number.isFinite(c.worst) ? `${c.worst_check} at ${f(c.worst)} of its threshold (seed ${c.worst_seed}); at most 0.5 is a 2x margin` : `failed its run (${c.worst_check})`}`
      : `cheat ${c.name}: ${c.runs === 0 ? 'did not run' : `accepted on seed ${c.worst_seed} (largest check ${c.worst_check} at ${f(c.worst)} of its threshold)`}`,
  );
}

export interface Recommendation {
  thresholds: ThresholdValues;
  /** Per threshold: the worst honest value, the closest cheat above 2x it, and why the value. */
  reasons: Record<string, { worst_honest: number; worst_honest_case: string; closest_cheat: number | null; closest_cheat_case: string | null; rule: string }>;
  /** Empty when the recommended thresholds accept every honest run with 2x margin and reject every cheat run. */
  problems: string[];
}

/** `x` with 2 significant digits (3, 4 if needed) while it stays in [lo, hi). */
function round(x: number, lo: number, hi: number): number {
  for (const d of [2, 3, 4]) {
    const y = Number(x.toPrecision(d));
    if (y >= lo && y < hi && y > 0) return y;
  }
  return x;
}

/**
 * Thresholds from measured runs. Per check: the worst honest magnitude h and the
 * smallest cheat value k above 2h (the closest cheat this check can catch;
 * cheats rejected by something no threshold decides do not count); the
 * threshold is their geometric middle, never below 2h; with h = 0
 * (deterministic honest runs) half of k; with no such cheat, the value in
 * force, raised to 2h if below. The changed-share ratio is kept. Then every
 * run is checked against the result.
 */
export function recommend(
  runs: { c: Pick<CalibrationCase, 'id' | 'name' | 'honest'>; r: RunReport }[],
  inForce: ThresholdValues,
): Recommendation {
  const problems: string[] = [];
  const thresholds: ThresholdValues = { ...inForce };
  const reasons: Recommendation['reasons'] = {};
  const honest = runs.filter((x) => x.c.honest);
  for (const x of honest) {
    if (!x.r.checks || x.r.failures.some((f) => !THRESHOLD_CODES.has(f.code))) {
      problems.push(`honest ${x.c.name} failed its run on seed ${x.r.seed} (${x.r.failures.map((f) => f.code).join(', ') || 'no checks'}): no threshold can accept it`);
    }
  }
  const measurable = (x: { r: RunReport }) => x.r.checks && !x.r.failures.some((f) => !THRESHOLD_CODES.has(f.code)) && x.r.checks.frozen_tensors.length === 0;
  const cheats = runs.filter((x) => !x.c.honest && measurable(x));
  // A trajectory limit not in force (CUDA until its first calibration) is set from the readings where every honest
  // run has them (calibrate records on every device), so that --write switches the record on; any other null stays.
  const recorded = honest.some(measurable) && honest.filter(measurable).every((x) => x.r.checks!.trajectory.length > 0);
  for (const c of CHECKS) {
    const current = inForce[c.key];
    if (current === null && !(recorded && (TRAJECTORY_KEYS as readonly string[]).includes(c.key))) continue;
    let h = 0;
    let hCase = '-';
    for (const x of honest.filter(measurable)) {
      const v = Math.abs(c.value(x.r.checks!)); // either sign (measureRun)
      if (v > h || hCase === '-') [h, hCase] = [v, `${x.c.name}, seed ${x.r.seed}`];
    }
    let k: number | null = null;
    let kCase: string | null = null;
    for (const x of cheats) {
      const v = c.value(x.r.checks!);
      // Not finite: nothing measured to set a limit by (a loss-head record never written reads Infinity).
      if (Number.isFinite(v) && v > 2 * h && (k === null || v < k)) [k, kCase] = [v, `${x.c.name}, seed ${x.r.seed}`];
    }
    let t: number;
    let rule: string;
    if (k === null) {
      if (current === null && h === 0) continue; // nothing measured to set it by: stays null
      t = current === null ? round(2 * h, 2 * h, Infinity) : Math.max(current, 2 * h);
      rule = t === current ? 'no cheat measured above 2x the worst honest: the value in force' : 'no cheat measured above 2x the worst honest: 2x the worst honest';
    } else if (h === 0) {
      t = round(k / 2, Number.MIN_VALUE, k);
      rule = 'honest runs identical to the reference: half the closest cheat';
    } else {
      const mid = Math.sqrt(h * k);
      t = mid >= 2 * h ? round(mid, 2 * h, k) : round(2 * h, 2 * h, k);
      rule = mid >= 2 * h ? `geometric middle: ${(t / h).toPrecision(2)}x the worst honest, ${(k / t).toPrecision(2)}x below the closest cheat` : `2x the worst honest (the closest cheat is only ${(k / h).toPrecision(2)}x it)`;
    }
    thresholds[c.key] = t;
    reasons[c.key] = { worst_honest: h, worst_honest_case: hCase, closest_cheat: k, closest_cheat_case: kCase, rule };
  }
  for (const x of runs.filter((y) => !y.c.honest)) {
    const m = measureRun(x.c.id, x.r, thresholds);
    if (!(m.worst > 1)) problems.push(`cheat ${x.c.name} on seed ${x.r.seed} passes every recommended threshold (largest check ${m.worstCheck} at ${Number(m.worst.toPrecision(2))} of its threshold)`);
  }
  return { thresholds, reasons, problems };
}

/** The kind of device thresholds are calibrated for: `cpu`, or the GPU's name as nvidia-smi reports it. */
export function deviceKind(device: string): string {
  if (!device.startsWith('cuda')) return 'cpu';
  const index = Number(/^cuda:(\d+)$/.exec(device)?.[1] ?? 0);
  // CUDA numbers the devices CUDA_VISIBLE_DEVICES lists; nvidia-smi numbers them all.
  const visible = process.env.CUDA_VISIBLE_DEVICES?.split(',').map((s) => s.trim()).filter(Boolean);
  const id = visible?.[index] ?? String(index);
  try {
    const name = execFileSync('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader', `--id=${id}`], { encoding: 'utf8', timeout: 30000 }).trim().split('\n')[0].trim();
    if (name) return name;
  } catch {
    // reported below
  }
  throw new UserError(`cannot tell which GPU ${device} is: \`nvidia-smi --query-gpu=name --id=${id}\` gave no name`, { hint: 'thresholds are calibrated per kind of GPU; the NVIDIA driver\'s nvidia-smi must be on PATH' });
}

/** hparams.verification's key for a device: `cpu` or `cuda`. */
export function verificationKey(device: string): 'cpu' | 'cuda' {
  return device.startsWith('cuda') ? 'cuda' : 'cpu';
}

/**
 * Refuses (UserError) when the thresholds in force for `device` were never
 * calibrated on this kind of device: a validator must not judge with
 * thresholds measured on another card.
 */
export function requireCalibrated(hparams: Hparams, device: string, hparamsFile: string): CalibrationRecord {
  const key = verificationKey(device);
  const kind = deviceKind(device);
  const t = hparams.verification[key];
  const rec = calibrationFor(t, kind);
  if (rec) return rec;
  const elsewhere = t.calibrations.map((c) => `${c.device} on ${c.date}${THRESHOLD_KEYS.every((k) => c.thresholds[k] === t[k]) ? '' : ' (other thresholds than those in force)'}`);
  throw new UserError(
    `the verification thresholds in force for ${key} (${hparamsFile}: verification.${key}) were never calibrated on this device (${kind})` +
      (elsewhere.length ? `; calibrated on: ${elsewhere.join(', ')}` : ''),
    { hint: `measure them here: \`tournament calibrate --device ${device} --benchmark-dir DIR --write\` (writes the recommended thresholds and the record into ${hparamsFile}), or pass --allow-uncalibrated to judge with them anyway` },
  );
}

export interface CalibrateOptions extends Omit<EvaluateManyOptions, 'submissions' | 'afterRun'> {
  cases: string[];
  /** The command as typed, for the record and the basis. */
  command: string;
}

export interface CalibrationResult {
  device: string;
  device_kind: string;
  hparams_key: 'cpu' | 'cuda';
  parameters: number;
  steps: number;
  warmup_steps: number;
  batch_size: number;
  seq_len: number;
  seeds: number[];
  date: string;
  command: string;
  thresholds_in_force: ThresholdValues;
  runs: (RunReport & { case: string; worst: number; worst_check: string })[];
  reference_runs: RunReport[];
  cases: CaseSummary[];
  /** The margin verdict on the thresholds in force. */
  holds: boolean;
  problems: string[];
  recommended: Recommendation & { basis: string };
}

export async function calibrate(o: CalibrateOptions): Promise<CalibrationResult> {
  const key = verificationKey(o.device);
  const kind = deviceKind(o.device);
  const scratch = path.join(o.workDir, 'calibration-cases');
  const cases = o.cases.map((id) => resolveCase(id, { batchSize: o.batchSize, steps: o.steps, scratch }));
  const dup = o.cases.find((c, i) => o.cases.indexOf(c) !== i);
  if (dup) throw new UserError(`case ${dup} is listed twice`);
  const { cases: _, command, ...rest } = o;
  // Recorded whatever the limits in force: a calibration measures the readings they are set from. The layers'
  // record too on the CPU; on a card only where its limits are set: at the 7B shape it would add about 66 GB of
  // host memory to the trajectory's 61 GB, never measured (README, The layers' record).
  const verdicts = await evaluateSubmissions({ ...rest, recordTrajectory: true, recordLayers: kind === 'cpu' ? true : undefined, submissions: cases.map((c) => ({ file: c.file, env: c.env, label: c.name })) });
  const compileFailed = verdicts.flatMap((v, i) => (v.reasons[0]?.startsWith('compile:') ? [`${cases[i].id}: ${v.reasons[0]}`] : []));
  if (compileFailed.length) throw new UserError(`calibration plugins did not compile: ${compileFailed.join('; ')}`);
  const refs = verdicts[0].reference_runs;
  const seeds = refs.map((r) => r.seed);
  const seqLen = refs[0] ? refs[0].tokens / (o.steps * o.batchSize) : 0;
  return judge({
    device: o.device, device_kind: kind, hparams_key: key, parameters: verdicts[0].parameters,
    steps: o.steps, warmup_steps: o.warmupSteps, batch_size: o.batchSize, seq_len: seqLen, seeds, command,
  }, cases.map((c, i) => ({ c, runs: verdicts[i].runs })), refs, thresholdValues(o.hparams.verification[key]), o.runs, `one reference run per seed: \`${command}\``);
}

/** What a calibration is of: the device, the benchmark's shape, its seeds and the command. */
type CalibrationShape = Pick<CalibrationResult, 'device' | 'device_kind' | 'hparams_key' | 'parameters' | 'steps' | 'warmup_steps' | 'batch_size' | 'seq_len' | 'seeds' | 'command'>;

/** Every run against the thresholds in force (the margin verdict), and one recommendation over them all. */
function judge(
  shape: CalibrationShape,
  cases: { c: Pick<CalibrationCase, 'id' | 'name' | 'honest' | 'skipped'>; runs: RunReport[] }[],
  refs: RunReport[],
  inForce: ThresholdValues,
  wanted: number | null,
  source: string,
): CalibrationResult {
  const date = new Date().toISOString().slice(0, 10);
  const runs = cases.flatMap(({ c, runs: rs }) => rs.map((r) => {
    const m = measureRun(c.id, r, inForce, c.honest);
    return { case: c.id, ...r, worst: m.worst, worst_check: m.worstCheck };
  }));
  const summaries = cases.map(({ c, runs: rs }) => summarise(c, rs, inForce, wanted ?? rs.length));
  const problems = marginProblems(summaries);
  const rec = recommend(cases.flatMap(({ c, runs: rs }) => rs.map((r) => ({ c, r }))), inForce);
  const g = (x: number) => x.toPrecision(2);
  const basis =
    `Calibrated ${date} on ${shape.device_kind} (${shape.device}), ${(shape.parameters / 1e6).toFixed(2)}M parameters, ${shape.steps} steps of ${shape.batch_size} x ${shape.seq_len} after ${shape.warmup_steps} warmup step(s), ` +
    `seeds ${shape.seeds.join(', ')}, ${source}. Cases: ${cases.map(({ c }) => c.id).join(', ')}. ` +
    CHECKS.map((c) => {
      const r = rec.reasons[c.key];
      if (!r) return `${c.key} not applied on this kind of device`;
      return `${c.key} ${rec.thresholds[c.key]}: worst honest ${g(r.worst_honest)} (${r.worst_honest_case}), closest cheat ${r.closest_cheat === null ? 'none above 2x it' : `${g(r.closest_cheat)} (${r.closest_cheat_case})`}; ${r.rule}`;
    }).join('. ') +
    `. min_changed_share_ratio ${rec.thresholds.min_changed_share_ratio} as in force.`;
  return {
    ...shape, date, thresholds_in_force: inForce, runs, reference_runs: refs, cases: summaries,
    holds: problems.length === 0, problems, recommended: { ...rec, basis },
  };
}

/** The fields of a run's checks that the thresholds read (a file from an older calibrate may lack some). */
const CHECK_FIELDS: (keyof NonNullable<RunReport['checks']>)[] = [
  'probe_loss', 'reference_probe_loss', 'cell_loss_deviation', 'batch_loss_shift', 'logits_rel_error', 'update_rel_error', 'max_kind_rel_error',
  'max_mlp_kind_rel_error', 'max_mlp_pair_excess', 'max_group_shift', 'max_head_alignment', 'max_head_position_excess', 'last_head_position_excess',
  'max_layer_position_excess', 'last_layer_position_excess', 'changed_share', 'reference_changed_share', 'frozen_tensors',
];

/**
 * Earlier calibrations (`calibrate --json` output) of one kind of device and
 * one benchmark shape, judged together: every run against the thresholds in
 * force now for that kind of device, and one recommendation over all of them.
 * A GPU calibration is split over calls (a seed of a dozen cases takes
 * minutes on the 7B shape); this is how their seeds add up. Refuses files of other devices or shapes,
 * a case honest in one file and a cheat in another, a case run twice on one
 * seed, and runs without a check the thresholds read.
 */
export function mergeCalibrations(files: { file: string; result: CalibrationResult }[], hparams: Hparams, command: string): CalibrationResult {
  if (files.length === 0) throw new UserError('--merge names no file');
  const shapeKeys = ['device_kind', 'hparams_key', 'parameters', 'steps', 'warmup_steps', 'batch_size', 'seq_len'] as const;
  for (const { file, result } of files) {
    if (!result || !Array.isArray(result.runs) || !Array.isArray(result.cases) || !Array.isArray(result.reference_runs) || typeof result.command !== 'string') {
      throw new UserError(`${file} is not what \`tournament calibrate --json\` prints`);
    }
    if (result.hparams_key !== 'cpu' && result.hparams_key !== 'cuda') throw new UserError(`${file} is not what \`tournament calibrate --json\` prints (hparams_key ${JSON.stringify(result.hparams_key)})`);
    for (const k of shapeKeys) {
      if (result[k] !== files[0].result[k]) {
        throw new UserError(`${file} and ${files[0].file} are not of one device and benchmark: ${k} ${JSON.stringify(result[k])} against ${JSON.stringify(files[0].result[k])}`);
      }
    }
  }
  const cases = new Map<string, { c: Pick<CalibrationCase, 'id' | 'name' | 'honest' | 'skipped'>; runs: RunReport[]; seen: Map<number, string> }>();
  for (const { file, result } of files) {
    for (const c of result.cases) {
      const known = cases.get(c.id);
      if (known && known.c.honest !== c.honest) throw new UserError(`case ${c.id} is ${c.honest ? 'honest' : 'a cheat'} in ${file} and not in another file`);
      if (!known) cases.set(c.id, { c: { id: c.id, name: c.name, honest: c.honest, skipped: c.skipped }, runs: [], seen: new Map() });
    }
    for (const { case: id, worst: _w, worst_check: _c, ...r } of result.runs) {
      const entry = cases.get(id);
      if (!entry) throw new UserError(`${file}: a run of case ${id}, which its cases do not list`);
      const twice = entry.seen.get(r.seed);
      if (twice !== undefined) throw new UserError(`case ${id} ran on seed ${r.seed} in both ${twice} and ${file}: each seed may count once`);
      const missing = r.checks ? CHECK_FIELDS.find((f) => r.checks![f] === undefined) : undefined;
      if (missing) throw new UserError(`${file}: the run of ${id} on seed ${r.seed} has no ${missing}`, { hint: 'it was written by an older tournament calibrate, before that check existed: run that calibration again' });
      entry.seen.set(r.seed, file);
      entry.runs.push(r);
    }
  }
  const refs = files.flatMap(({ result }) => result.reference_runs);
  const seeds = [...new Set(refs.map((r) => r.seed))].sort((a, b) => a - b);
  const first = files[0].result;
  return judge(
    { device: first.device, device_kind: first.device_kind, hparams_key: first.hparams_key, parameters: first.parameters, steps: first.steps, warmup_steps: first.warmup_steps, batch_size: first.batch_size, seq_len: first.seq_len, seeds, command },
    [...cases.values()].map(({ c, runs }) => ({ c, runs })),
    refs,
    thresholdValues(hparams.verification[first.hparams_key]),
    null,
    `one reference run per seed, from ${files.length} calibrations (${files.map(({ result }) => `\`${result.command}\` on ${result.date}`).join('; ')}) judged together by \`${command}\``,
  );
}

/**
 * Stores a calibration's recommended thresholds, basis and record in the
 * hparams file (verification.<cpu|cuda>), replacing earlier records: they
 * were of other thresholds. Refuses when the recommendation leaves a problem.
 */
export function writeCalibration(file: string, r: CalibrationResult): void {
  if (r.recommended.problems.length) {
    throw new UserError(`not written: no thresholds separate the honest runs from the cheats here:\n  - ${r.recommended.problems.join('\n  - ')}`, {
      hint: 'a cheat that no threshold can catch skips less work than this device\'s noise hides; leave it out of --cases only if you accept that, and say so',
    });
  }
  const raw = JSON.parse(fs.readFileSync(file, 'utf8')) as { verification: Record<string, unknown> };
  const record: CalibrationRecord = { device: r.device_kind, date: r.date, command: r.command, thresholds: r.recommended.thresholds };
  raw.verification[r.hparams_key] = { ...r.recommended.thresholds, basis: r.recommended.basis, calibrations: [record] };
  parseHparams(raw, file); // what we write must load
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, JSON.stringify(raw, null, 2) + '\n');
  fs.renameSync(tmp, file);
}
