// tournament calibrate: the margin verdict and the recommendation on synthetic
// numbers; the command end to end on the CPU default (a few cases, one seed):
// its JSON, --write into a copy of hparams; and the validator's refusal of
// thresholds never calibrated on its kind of device.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { calibrationFor, loadHparams, type Hparams } from '../src/config/hparams';
import { UserError } from '../src/errors';
import { measureRun } from '../src/harness/margin';
import { CALIBRATION_DIR, marginProblems, mergeCalibrations, recommend, resolveCase, summarise, writeCalibration, type CalibrationResult } from '../src/harness/calibrate';
import { formatCalibration } from '../src/harness/report';
import type { RunReport } from '../src/harness/types';
import { setupPreset } from '../src/setup/setup';
import { HPARAMS_FILE } from '../src/util/paths';
import { runCli } from './helpers/miner-cli';
import { willCompile } from './helpers/prewarm';
import { tmpDir } from './helpers/tmp';

/** The command's batch size, in the test's copy of hparams. */
const BATCH = 4;
const T = { probe_loss_abs: 0.01, cell_loss_abs: 0.01, batch_loss_abs: 0.01, logits_rel_error: 0.1, update_rel_error: 0.1, kind_update_rel_error: 0.5, mlp_update_rel_error: 0.2, mlp_pair_energy_excess: 0.5, group_loss_shift_abs: 0.01, head_alignment_abs: 0.001, head_position_excess: 1, head_position_excess_last: 2, layer_position_excess: 1, layer_position_excess_last: 2, head_trajectory_excess: 1, mlp_trajectory_excess: 10, attention_trajectory_excess: 50, head_input_error: 0.05, head_grad_error: 0.01, layer_forward_error: 0.01, layer_backward_error: 0.02, layer_small_term_share: null, layer_small_term_energy: null, mlp_grad_small_term_excess: null, mlp_record_trajectory_excess: 2, attention_record_trajectory_excess: 2, min_changed_share_ratio: 0.97 };

/** A completed run whose checks are `v` (probe: its loss minus the reference's). */
function run(seed: number, v: { probe?: number; row?: number; batch?: number; logits?: number; update?: number; kind?: number; mlp?: number; pair?: number; head?: number; mlpSteps?: number; layerForward?: number; mlpRecord?: number; changed?: number; frozen?: string[] }, codes: string[] = []): RunReport {
  return {
    seed, ok: codes.length === 0, failures: codes.map((code) => ({ code: code as never, message: code })),
    seconds: 1, tokens: 1, tokens_per_second: 1, overhead_seconds: 0, checkpoint_seconds: null, step_seconds: 1, reported_loss: 1, reported_peak_memory_bytes: 0,
    checks: {
      probe_loss: 2 + (v.probe ?? 0), reference_probe_loss: 2, initial_probe_loss: 3, cell_loss_deviation: v.row ?? 0, batch_loss_shift: v.batch ?? 0,
      logits_rel_error: v.logits ?? 0, update_rel_error: v.update ?? 0, max_tensor_rel_error: 0, max_kind_rel_error: v.kind ?? 0, worst_kind: null, max_mlp_kind_rel_error: v.mlp ?? 0, max_mlp_pair_excess: v.pair ?? 0, kind_rel_errors: {}, max_group_shift: 0, worst_group: null, group_shifts: {}, max_head_alignment: 0, head_alignment: [], max_head_position_excess: 0, last_head_position_excess: 0, head_position_excess: [], max_layer_position_excess: 0, last_layer_position_excess: 0, layer_positions: [],
      max_trajectory_error: 0, max_head_trajectory: v.head ?? 0, max_mlp_trajectory: v.mlpSteps ?? 0, max_attention_trajectory: 0, max_head_input_error: 0, max_head_grad_error: 0, ...(v.layerForward !== undefined && { max_layer_forward_error: v.layerForward, max_layer_backward_error: 0, max_mlp_record_trajectory: v.mlpRecord ?? 0 }), worst_trajectory: null, trajectory: [],
      changed_share: v.changed ?? 1, reference_changed_share: 1, frozen_tensors: v.frozen ?? [],
    },
  };
}
const honest = { id: 'h', name: 'honest h', honest: true, skipped: null };
const cheat = { id: 'c', name: 'cheat c', honest: false, skipped: 0.05 };

describe('calibrate: the margin verdict and the recommendation', function () {
  it('measures a run as its largest check over its threshold; a failure no threshold decides is infinitely far', function () {
    assert.deepEqual(measureRun('x', run(1, { probe: -0.004, row: 0.002, logits: 0.03, update: 0.05 }), T), { case: 'x', seed: 1, worst: 0.5, worstCheck: 'update error' });
    assert.ok(Math.abs(measureRun('x', run(1, { probe: -0.02 }), T).worst - 2) < 1e-9); // |probe - ref|
    assert.equal(measureRun('x', run(1, { frozen: ['lm_head.weight'] }), T).worst, Infinity);
    assert.ok(Math.abs(measureRun('x', run(1, { changed: 0.985 }), T).worst - 0.5) < 1e-9); // half the allowed shortfall of 0.03
    assert.equal(measureRun('x', run(1, { changed: 1.02 }), T).worst, 0); // more than the reference: no limit
    assert.deepEqual(measureRun('x', run(1, { pair: 0.75 }), T), { case: 'x', seed: 1, worst: 1.5, worstCheck: 'an MLP kind along the data between mismatched positions' });
    assert.deepEqual(measureRun('x', run(1, {}, ['tokens']), T), { case: 'x', seed: 1, worst: Infinity, worstCheck: 'tokens' });
    assert.deepEqual(measureRun('x', { ...run(1, {}, ['crash']), checks: null }, T), { case: 'x', seed: 1, worst: Infinity, worstCheck: 'crash' });
    assert.deepEqual(measureRun('x', run(1, { head: 1.5 }), T), { case: 'x', seed: 1, worst: 1.5, worstCheck: 'lm_head\'s steps against the judge\'s own' });
    assert.deepEqual(measureRun('x', run(1, { layerForward: 0.03, mlpRecord: 1 }), T), { case: 'x', seed: 1, worst: 3, worstCheck: 'a layer\'s recorded forward against the judge\'s from the record before it' });
    assert.deepEqual(measureRun('x', run(1, { layerForward: 0, mlpRecord: 5 }), T), { case: 'x', seed: 1, worst: 2.5, worstCheck: 'an MLP kind\'s steps against the judge\'s from the record\'s gradient' });
    assert.deepEqual(measureRun('x', run(1, { mlpSteps: 12 }), T), { case: 'x', seed: 1, worst: 1.2, worstCheck: 'an MLP kind\'s steps against the judge\'s own' });
    // A limit this kind of device does not apply (null: no trajectory on CUDA yet) does not measure.
    assert.equal(measureRun('x', run(1, { head: 1.5 }), { ...T, head_trajectory_excess: null }).worst, 0);
  });

  it('recommends a trajectory limit not in force from the readings where every honest run recorded them, and only then', function () {
    const off = { ...T, head_trajectory_excess: null, mlp_trajectory_excess: null, probe_loss_abs: null as unknown as number };
    const recorded = (r: RunReport): RunReport => ({ ...r, checks: { ...r.checks!, trajectory: [{ mlp_gate: 1 }] } });
    // Nothing recorded (a CUDA evaluation while its limits are null): stays null.
    assert.equal(recommend([{ c: honest, r: run(1, { head: 0.5, mlpSteps: 4 }) }], off).thresholds.head_trajectory_excess, null);
    // Recorded (calibrate records on every device): 2x the worst honest, or between it and the closest cheat.
    const rec = recommend([{ c: honest, r: recorded(run(1, { head: 0.5, mlpSteps: 4 })) }, { c: honest, r: recorded(run(2, { head: 0.25, mlpSteps: 6 })) },
      { c: cheat, r: recorded(run(1, { head: 0.1, mlpSteps: 600 })) }], off);
    assert.equal(rec.thresholds.head_trajectory_excess, 1);
    // A new limit is 2x the worst honest in the fewest significant digits (two to four) that stay at or above it.
    assert.equal(recommend([{ c: honest, r: recorded(run(1, { head: 0.0032732 })) }], off).thresholds.head_trajectory_excess, 0.00655);
    assert.ok(rec.thresholds.mlp_trajectory_excess! > 12 && rec.thresholds.mlp_trajectory_excess! < 600, String(rec.thresholds.mlp_trajectory_excess));
    assert.equal(rec.thresholds.probe_loss_abs, null, 'a null that is not the trajectory\'s stays');
    // One honest run without a record: nothing to set the limits by.
    assert.equal(recommend([{ c: honest, r: recorded(run(1, { head: 0.5 })) }, { c: honest, r: run(2, { head: 0.5 }) }], off).thresholds.head_trajectory_excess, null);
  });

  it('holds only with every honest run within half a threshold and every cheat rejected in every run', function () {
    const good = summarise(honest, [run(1, { row: 0.005 }), run(2, { row: 0.004 })], T, 2);
    assert.equal(good.ok, true);
    assert.equal(good.worst, 0.5);
    const thin = summarise(honest, [run(1, { row: 0.004 }), run(2, { row: 0.006 })], T, 2);
    assert.equal(thin.ok, false);
    assert.equal(thin.worst_seed, 2);
    const caught = summarise(cheat, [run(1, { row: 0.05 }), run(2, { row: 0.02 })], T, 2);
    assert.equal(caught.ok, true);
    assert.equal(caught.worst, 2); // the run closest to passing
    const once = summarise(cheat, [run(1, { row: 0.05 }), run(2, { row: 0.009 })], T, 2);
    assert.equal(once.ok, false);
    assert.equal(summarise(honest, [run(1, {})], T, 2).ok, false, 'a missing run is no verdict');
    const problems = marginProblems([good, thin, caught, once]);
    assert.equal(problems.length, 2);
    assert.match(problems[0], /^honest honest h: cell loss at 0\.6 of its threshold \(seed 2\); at most 0\.5 is a 2x margin$/);
    assert.match(problems[1], /^cheat cheat c: accepted on seed 2 \(largest check cell loss at 0\.9 of its threshold\)$/);
  });

  it('recommends each threshold between 2x the worst honest and the closest cheat', function () {
    const r = recommend(
      [
        { c: honest, r: run(1, { row: 0.001, update: 0.02, logits: 0 }) },
        { c: honest, r: run(2, { row: 0.002, update: 0.03, logits: 0 }) },
        { c: cheat, r: run(1, { row: 0.05, update: 0.04, logits: 0 }) },
        { c: cheat, r: run(2, { row: 0.008, update: 0.05, logits: 0 }) },
        { c: { ...cheat, name: 'stale logits' }, r: run(1, { logits: 0.8 }) },
        { c: { ...cheat, name: 'frozen' }, r: run(1, { row: 0.0041, frozen: ['x'] }) }, // caught by no threshold: does not count
      ],
      T,
    );
    // row: h 0.002, closest cheat above 2h 0.008: geometric middle 0.004 = 2h.
    assert.equal(r.thresholds.cell_loss_abs, 0.004);
    // update: h 0.03, the cheats (0.04, 0.05) are below 2h: 2x the worst honest, no cheat to place it against.
    assert.equal(r.thresholds.update_rel_error, 0.1);
    assert.equal(r.reasons.update_rel_error.closest_cheat, null);
    // logits: honest exactly 0: half the closest cheat.
    assert.equal(r.thresholds.logits_rel_error, 0.4);
    // probe: no cheat moves it: the value in force.
    assert.equal(r.thresholds.probe_loss_abs, T.probe_loss_abs);
    assert.equal(r.thresholds.min_changed_share_ratio, T.min_changed_share_ratio);
    assert.deepEqual(r.problems, []);

    const mid = recommend([{ c: honest, r: run(1, { row: 0.001 }) }, { c: cheat, r: run(1, { row: 0.1 }) }], T);
    assert.equal(mid.thresholds.cell_loss_abs, 0.01); // sqrt(0.001 x 0.1): 10x either side
    assert.match(mid.reasons.cell_loss_abs.rule, /geometric middle: 10x the worst honest, 10x below the closest cheat/);
  });

  it('takes an honest batch-loss shift by its size, either sign: the next seeds may turn it', function () {
    // An honest run that trained a little more than the reference (shift -0.004) is 0.4 of the threshold away, not -0.4.
    assert.ok(Math.abs(measureRun('h', run(1, { batch: -0.004 }), T, true).worst - 0.4) < 1e-9);
    assert.equal(summarise(honest, [run(1, { batch: -0.006 })], T, 1).ok, false, 'an honest |shift| over half the threshold is no 2x margin');
    // A cheat is measured as the check judges it: one-sided, a negative shift is no sign of skipped work.
    assert.equal(measureRun('c', run(1, { batch: -0.004, row: 0.02 }), T).worstCheck, 'cell loss');
    // The recommendation starts from the honest magnitude: 2 x 0.003, not a negative threshold.
    const r = recommend([{ c: honest, r: run(1, { batch: -0.003 }) }, { c: honest, r: run(2, { batch: 0.001 }) }, { c: cheat, r: run(1, { batch: 0.024 }) }], T);
    assert.equal(r.reasons.batch_loss_abs.worst_honest, 0.003);
    assert.equal(r.thresholds.batch_loss_abs, 0.0085); // sqrt(0.003 x 0.024), rounded
    assert.deepEqual(r.problems, []);
  });

  it('says when no thresholds separate a cheat from the honest runs, and --write then refuses', function () {
    const r = recommend([{ c: honest, r: run(1, { row: 0.004, update: 0.04 }) }, { c: cheat, r: run(1, { row: 0.005, update: 0.05 }) }], T);
    assert.equal(r.problems.length, 1);
    assert.match(r.problems[0], /^cheat cheat c on seed 1 passes every recommended threshold/);
    const failed = recommend([{ c: honest, r: { ...run(1, {}, ['crash']), checks: null } }], T);
    assert.match(failed.problems[0], /^honest honest h failed its run on seed 1 \(crash\)/);
    const d = tmpDir('calibrate-refuse');
    const file = path.join(d, 'hparams.json');
    fs.copyFileSync(HPARAMS_FILE, file);
    const result = { recommended: { ...r, basis: 'x' } } as unknown as CalibrationResult;
    assert.throws(() => writeCalibration(file, result), (e: unknown) => e instanceof UserError && /^not written: no thresholds separate/.test(e.message));
    assert.equal(fs.readFileSync(file, 'utf8'), fs.readFileSync(HPARAMS_FILE, 'utf8'));
  });

  it('--merge judges earlier calibrations together: all their seeds against the thresholds in force, one recommendation', function () {
    const file = (seeds: number[], h: (s: number) => RunReport, c: (s: number) => RunReport, over: Partial<CalibrationResult> = {}): CalibrationResult => ({
      device: 'cpu', device_kind: 'cpu', hparams_key: 'cpu', parameters: 1e6, steps: 3, warmup_steps: 1, batch_size: 4, seq_len: 128, seeds, date: '2026-12-01',
      command: `tournament calibrate --seed ${seeds[0]}`, thresholds_in_force: T,
      runs: [...seeds.map((x) => ({ case: 'h', ...h(x), worst: 0, worst_check: '-' })), ...seeds.map((x) => ({ case: 'c', ...c(x), worst: 0, worst_check: '-' }))],
      reference_runs: seeds.map((x) => run(x, {})),
      cases: [{ ...honest, runs: seeds.length, worst: 0, worst_check: '-', worst_seed: null, ok: true }, { ...cheat, runs: seeds.length, worst: 0, worst_check: '-', worst_seed: null, ok: true }],
      holds: true, problems: [], recommended: { thresholds: T, reasons: {}, problems: [], basis: '' },
      ...over,
    });
    const hp = { verification: { cpu: T } } as unknown as Hparams;
    const a = file([1], (x) => run(x, { row: 0.002 }), (x) => run(x, { row: 0.05 }));
    const b = file([2], (x) => run(x, { row: 0.004 }), (x) => run(x, { row: 0.03 }));
    const m = mergeCalibrations([{ file: 'a.json', result: a }, { file: 'b.json', result: b }], hp, 'tournament calibrate --merge a.json b.json');
    assert.deepEqual(m.seeds, [1, 2]);
    assert.deepEqual(m.runs.map((r) => [r.case, r.seed]), [['h', 1], ['h', 2], ['c', 1], ['c', 2]]);
    assert.deepEqual(m.cases.map((c) => [c.id, c.runs, c.ok]), [['h', 2, true], ['c', 2, true]]);
    // Each file alone would put the honest worst at its own run; together it is b's 0.004, and the closest cheat b's 0.03.
    assert.equal(m.recommended.reasons.cell_loss_abs.worst_honest, 0.004);
    assert.equal(m.recommended.reasons.cell_loss_abs.closest_cheat, 0.03);
    assert.equal(m.recommended.thresholds.cell_loss_abs, 0.011); // sqrt(0.004 x 0.03), rounded
    assert.match(m.recommended.basis, /seeds 1, 2, one reference run per seed, from 2 calibrations \(`tournament calibrate --seed 1` on 2026-12-01; `tournament calibrate --seed 2` on 2026-12-01\) judged together by `tournament calibrate --merge a\.json b\.json`/);
    // Judged against the thresholds in force now, not those each file was judged with.
    const tight = mergeCalibrations([{ file: 'a.json', result: a }, { file: 'b.json', result: b }], { verification: { cpu: { ...T, cell_loss_abs: 0.006 } } } as unknown as Hparams, 'x');
    assert.equal(tight.holds, false);
    assert.match(tight.problems[0], /^honest honest h: cell loss at 0\.67 of its threshold \(seed 2\)/);

    const refuses = (files: { file: string; result: CalibrationResult }[], re: RegExp) =>
      assert.throws(() => mergeCalibrations(files, hp, 'x'), (e: unknown) => e instanceof UserError && re.test(e.message));
    refuses([{ file: 'a.json', result: a }, { file: 'b.json', result: { ...b, steps: 5 } }], /^b\.json and a\.json are not of one device and benchmark: steps 5 against 3$/);
    refuses([{ file: 'a.json', result: a }, { file: 'a2.json', result: a }], /^case h ran on seed 1 in both a\.json and a2\.json: each seed may count once$/);
    refuses([{ file: 'a.json', result: a }, { file: 'b.json', result: { ...b, cases: [{ ...b.cases[0], honest: false }, b.cases[1]] } }], /^case h is a cheat in b\.json and not in another file$/);
    const old = file([3], (x) => run(x, {}), (x) => run(x, {}));
    delete (old.runs[0].checks as Partial<NonNullable<RunReport['checks']>>).max_mlp_pair_excess;
    refuses([{ file: 'old.json', result: old }], /^old\.json: the run of h on seed 3 has no max_mlp_pair_excess$/);
    refuses([{ file: 'x.json', result: { seeds: [] } as unknown as CalibrationResult }], /^x\.json is not what `tournament calibrate --json` prints$/);
    refuses([], /^--merge names no file$/);
  });

  it('resolves cases: drop shares, shipped plugins by their header, and names what is unknown', function () {
    const o = { batchSize: 16, steps: 5, scratch: tmpDir('calibrate-cases') };
    assert.equal(resolveCase('drop:last:2', o).skipped, 2 / 80);
    assert.equal(resolveCase('drop:every:4', o).skipped, 4 / 16);
    assert.match(fs.readFileSync(resolveCase('drop:every:4', o).file, 'utf8'), /^#define DROP_ROWS 4\n#define DROP_MODE 0\n/);
    assert.throws(() => resolveCase('drop:last:16', o), /K must be in \[1, 15\]/);
    assert.equal(resolveCase('honest_grad_accum', o).honest, true);
    assert.equal(resolveCase('skip_last_step', o).honest, false);
    assert.equal(resolveCase('skip_last_step', o).file, path.join(CALIBRATION_DIR, 'skip_last_step.cpp'));
    assert.equal(resolveCase('baseline', o).honest, true);
    assert.throws(() => resolveCase('no_such_case', o), (e: unknown) => e instanceof UserError && /no such plugin/.test(e.message) && /honest_fp32_loss/.test(e.hint ?? ''));
  });
});

describe('calibrate: the command on the CPU default, and the validator\'s refusal', function () {
  this.timeout(1_200_000);
  const CASES = 'baseline,honest_fp32_loss,skip_last_step,drop:last:2';
  const scratch = tmpDir('calibrate-cases');
  willCompile(...CASES.split(',').map((id) => resolveCase(id, { batchSize: BATCH, steps: 3, scratch }).file)); // the bytes the command will compile
  let dir: string;
  let bench: string;
  let written: string;
  let result: CalibrationResult & { written: boolean; hparams_file: string };

  before(async function () {
    dir = tmpDir('calibrate');
    fs.chmodSync(dir, 0o755); // the sandbox's own uid must reach the plugins
    bench = path.join(dir, 'benchmark');
    setupPreset({ dir: bench, preset: 'tiny', seed: 42, force: false });
    written = path.join(dir, 'hparams.json');
    // Batches of 4 instead of 16: calibrate takes the batch from hparams, and a run's cost is steps x batch here.
    fs.writeFileSync(written, JSON.stringify({ ...JSON.parse(fs.readFileSync(HPARAMS_FILE, 'utf8')), benchmark_batch_size: BATCH }, null, 2) + '\n');
    const r = await runCli(
      ['calibrate', '--device', 'cpu', '--benchmark-dir', bench, '--hparams', written, '--seed-count', '1', '--seed', '1000', '--steps', '3', '--warmup-steps', '1',
        '--cases', CASES, '--threads', '1', '--json', '--write', '--work-dir', path.join(dir, 'work')],
      { cwd: dir },
    );
    assert.equal(r.code, 0, r.stderr);
    result = JSON.parse(r.stdout);
  });

  it('runs every case against one reference run per seed and reports each run and each case', function () {
    assert.deepEqual(result.seeds, [1000]);
    assert.equal(result.reference_runs.length, 1);
    assert.equal(result.device_kind, 'cpu');
    assert.deepEqual(result.runs.map((r) => r.case), ['baseline', 'honest_fp32_loss', 'skip_last_step', 'drop:last:2']);
    assert.deepEqual(result.cases.map((c) => [c.id, c.honest, c.runs]), [['baseline', true, 1], ['honest_fp32_loss', true, 1], ['skip_last_step', false, 1], ['drop:last:2', false, 1]]);
    assert.equal(result.cases[3].skipped, 2 / (BATCH * 3));
    // CPU runs are deterministic: the baseline against itself is the reference, bit for bit.
    const base = result.runs[0].checks!;
    assert.deepEqual([base.probe_loss - base.reference_probe_loss, base.cell_loss_deviation, base.logits_rel_error, base.update_rel_error], [0, 0, 0, 0]);
    assert.equal(result.cases[0].ok, true);
    assert.equal(result.cases[2].ok, true, 'the skipped step is rejected');
    assert.ok(result.runs[2].failures.length > 0);
    assert.equal(result.holds, result.cases.every((c) => c.ok));
    const text = formatCalibration(result, { hparamsFile: written, written: true });
    assert.match(text, /^\| skip_last_step \| 1000 \| .* \| (probe_loss|cell_loss|update_error)/m);
    assert.match(text, /^\| 2 row\(s\) of the last batch untrained \| cheat \| 16\.67% \| 1 \|/m);
  });

  it('--write stores the recommended thresholds, their basis and the calibration record, and the file loads', function () {
    assert.equal(result.written, true);
    assert.deepEqual(result.recommended.problems, []);
    const hp = loadHparams(written);
    const cpu = hp.verification.cpu;
    for (const [k, v] of Object.entries(result.recommended.thresholds)) assert.equal(cpu[k as keyof typeof cpu], v, k);
    assert.equal(cpu.basis, result.recommended.basis);
    assert.match(cpu.basis, /seeds 1000, one reference run per seed: `tournament calibrate --device cpu/);
    assert.equal(cpu.calibrations.length, 1);
    assert.equal(cpu.calibrations[0].device, 'cpu');
    assert.match(cpu.calibrations[0].date, /^\d{4}-\d{2}-\d{2}$/);
    assert.ok(calibrationFor(cpu, 'cpu'));
    assert.deepEqual(hp.verification.cuda, loadHparams(HPARAMS_FILE).verification.cuda, 'the other device is untouched');
    // Every cheat run is rejected by the thresholds written.
    for (const r of result.runs.filter((x) => !result.cases.find((c) => c.id === x.case)!.honest)) assert.ok(measureRun(r.case, r, cpu).worst > 1, r.case);
  });

  it('--merge adds the seeds of calibrate --json files and refuses what does not apply', async function () {
    const a = path.join(dir, 'cal-a.json');
    const b = path.join(dir, 'cal-b.json');
    fs.writeFileSync(a, JSON.stringify(result));
    const shift = (r: RunReport) => ({ ...r, seed: r.seed + 1 });
    fs.writeFileSync(b, JSON.stringify({ ...result, seeds: [1001], runs: result.runs.map(shift), reference_runs: result.reference_runs.map(shift) }));
    const r = await runCli(['calibrate', '--merge', a, b, '--hparams', written, '--json'], { cwd: dir });
    const m = JSON.parse(r.stdout) as CalibrationResult;
    assert.equal(r.code, m.holds ? 0 : 3, r.stderr);
    assert.deepEqual(m.seeds, [1000, 1001]);
    assert.deepEqual(m.cases.map((c) => [c.id, c.runs]), result.cases.map((c) => [c.id, 2]));
    assert.equal(m.runs.length, 2 * result.runs.length);
    const bad = await runCli(['calibrate', '--merge', a, '--cases', 'baseline'], { cwd: dir });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error: --merge runs nothing: --cases does not apply/m);
    const twice = await runCli(['calibrate', '--merge', a, a], { cwd: dir });
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /each seed may count once/);
    assert.doesNotMatch(twice.stderr, /\n\s+at .*:\d+:\d+/, 'no stack trace');
  });

  it('evaluate refuses thresholds never calibrated on this kind of device, says what to run, and --allow-uncalibrated overrides', async function () {
    const shipped = JSON.parse(fs.readFileSync(HPARAMS_FILE, 'utf8'));
    const none = path.join(dir, 'uncalibrated.json');
    fs.writeFileSync(none, JSON.stringify({ ...shipped, verification: { ...shipped.verification, cpu: { ...shipped.verification.cpu, calibrations: [] } } }));
    const edited = path.join(dir, 'edited.json');
    fs.writeFileSync(edited, JSON.stringify({ ...shipped, verification: { ...shipped.verification, cpu: { ...shipped.verification.cpu, cell_loss_abs: 0.1 } } }));
    const evaluate = (hp: string, extra: string[] = []) =>
      runCli(['evaluate', '--network', 'local', '--once', '--device', 'cpu', '--benchmark-dir', bench, '--data-dir', path.join(dir, `vd-${path.basename(hp)}`), '--hparams', hp, ...extra], { cwd: dir });

    let r = await evaluate(none);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^error: the verification thresholds in force for cpu \(.*uncalibrated\.json: verification\.cpu\) were never calibrated on this device \(cpu\)\nhint: measure them here: `tournament calibrate --device cpu --benchmark-dir DIR --write`.* or pass --allow-uncalibrated/m);
    assert.doesNotMatch(r.stderr, /\n\s+at .*:\d+:\d+/, 'no stack trace');
    assert.ok(!fs.existsSync(path.join(dir, 'vd-uncalibrated.json')), 'refused before anything was made');

    r = await evaluate(edited);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /calibrated on: cpu on \d{4}-\d{2}-\d{2} \(other thresholds than those in force\)/);

    r = await evaluate(none, ['--allow-uncalibrated']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /not checked for calibration on this device \(--allow-uncalibrated\)/);

    r = await evaluate(written);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /verification thresholds calibrated on cpu on \d{4}-\d{2}-\d{2}/);
  });
});
