// local-bench as a miner runs it: exit status 0 when accepted and 3 when
// rejected, and the --json verdict's fields: tokens/s from the trusted clock
// (tokens / seconds per run), their median, MFU from the peak given, the seeds
// drawn per run. Small runs (batch 4, 2 steps) on the tiny default.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { loadHparams, TRAJECTORY_KEYS } from '../src/config/hparams';
import { setupPreset } from '../src/setup/setup';
import { PROJECT_ROOT } from '../src/util/paths';
import { willCompile } from './helpers/prewarm';
import { tmpDir, removeTmpDir } from './helpers/tmp';

const CLI = path.join(PROJECT_ROOT, 'bin', 'tournament');

describe('local-bench (CLI)', function () {
  this.timeout(600_000);
  willCompile(
    path.join(PROJECT_ROOT, 'local_test', 'train.cpp'),
    path.join(PROJECT_ROOT, 'local_test', 'calibration', 'skip_last_step.cpp'),
    path.join(PROJECT_ROOT, 'test', 'plugins', 'seed_foresight.cpp'),
    path.join(PROJECT_ROOT, 'test', 'plugins', 'no_step_done.cpp'),
  );
  let dir: string;
  let bench: string;

  before(function () {
    dir = tmpDir('local-bench-');
    fs.chmodSync(dir, 0o755); // the sandbox's own uid must reach the compiled plugins
    bench = path.join(dir, 'benchmark');
    setupPreset({ dir: bench, preset: 'tiny', seed: 42, force: false });
  });
  after(function () {
    removeTmpDir(dir);
  });

  const bench_ = (submission: string, runs: number, extra: string[] = []) => {
    const r = spawnSync(
      CLI,
      ['local-bench', submission, '--benchmark-dir', bench, '--work-dir', path.join(dir, 'work'), '--runs', String(runs), '--steps', '2',
        '--warmup-steps', '1', '--batch-size', '4', '--peak-tflops', '1', '--json', '--device', 'cpu', ...extra],
      { encoding: 'utf8', timeout: 600_000 },
    );
    return { status: r.status, json: r.stdout ? JSON.parse(r.stdout) : undefined, stderr: r.stderr };
  };

  it('accepts the baseline with exit status 0; tokens/s is the median of tokens / trusted seconds, MFU 6 x params x tokens/s over the peak', function () {
    const r = bench_(path.join(PROJECT_ROOT, 'local_test', 'train.cpp'), 2); // two runs: the median and a seed per run
    assert.equal(r.status, 0, r.stderr);
    const v = r.json;
    assert.equal(v.accepted, true);
    assert.equal(v.runs.length, 2);
    assert.equal(v.reference_runs.length, 2);
    for (const run of v.runs) {
      assert.equal(run.tokens, 2 * 4 * 128);
      assert.ok(Math.abs(run.tokens_per_second - run.tokens / run.seconds) < 1e-6 * run.tokens_per_second);
      assert.ok(Number.isInteger(run.seed));
      assert.ok(run.checks && typeof run.checks.cell_loss_deviation === 'number');
      // The margin: the run's largest check over its limit, under 1 for an accepted run and read off the limits it shows.
      assert.ok(run.largest_check && run.largest_check.of_limit >= 0 && run.largest_check.of_limit < 1, JSON.stringify(run.largest_check));
    }
    assert.equal(v.limits.probe_loss_abs, loadHparams(path.join(PROJECT_ROOT, 'hparams', 'hparams.json')).verification.cpu.probe_loss_abs, 'the verdict shows the limits in force');
    assert.notEqual(v.runs[0].seed, v.runs[1].seed, 'each run draws its own seed');
    const median = (v.runs[0].tokens_per_second + v.runs[1].tokens_per_second) / 2;
    assert.ok(Math.abs(v.tokens_per_second - median) < 1e-6 * median);
    assert.ok(Math.abs(v.mfu - (6 * v.parameters * v.tokens_per_second) / 1e12) < 1e-12);
    assert.deepEqual(v.reasons, []);
    for (const k of ['submission', 'device', 'parameters', 'mfu_peak_tflops', 'sandbox']) assert.ok(k in v, `--json lacks ${k}`);
  });

  it('under --seed, warmup\'s start says nothing of the timed seed (seed_foresight, the thirteenth attack pass)', function () {
    // seed_foresight fails its own run when it finds the timed seed from warmup's initial weights.
    const r = bench_(path.join(PROJECT_ROOT, 'test', 'plugins', 'seed_foresight.cpp'), 2, ['--seed', '1000']);
    assert.equal(r.status, 0, `${r.stderr}\n${JSON.stringify(r.json?.reasons)}`);
    assert.deepEqual(r.json.runs.map((x: { seed: number }) => x.seed), [1000, 1001], '--seed S reproduces: run i uses S + i');
  });

  it('rejects a cheat with exit status 3 and says why', function () {
    const r = bench_(path.join(PROJECT_ROOT, 'local_test', 'calibration', 'skip_last_step.cpp'), 1); // one failed run rejects
    assert.equal(r.status, 3, r.stderr);
    assert.equal(r.json.accepted, false);
    assert.equal(r.json.tokens_per_second, null);
    assert.ok(r.json.reasons.length > 0);
    assert.ok(r.json.runs[0].largest_check.of_limit > 1, JSON.stringify(r.json.runs[0].largest_check)); // a limit it failed
  });

  it('records and repeats the steps only where a limit reads them: with those limits null nothing is recorded or judged', function () {
    // As on CUDA until its limits are calibrated: no_step_done, which fails as unrecorded under the CPU's limits,
    // is accepted, and no run has a trajectory reading.
    const hp = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'hparams', 'hparams.json'), 'utf8'));
    for (const k of TRAJECTORY_KEYS) hp.verification.cpu[k] = null;
    const file = path.join(dir, 'hparams-unrecorded.json');
    fs.writeFileSync(file, JSON.stringify(hp));
    const plugin = path.join(PROJECT_ROOT, 'test', 'plugins', 'no_step_done.cpp');
    const off = bench_(plugin, 1, ['--hparams', file, '--seed', '1100']);
    assert.equal(off.status, 0, `${off.stderr}\n${JSON.stringify(off.json?.reasons)}`);
    assert.deepEqual(off.json.runs[0].checks.trajectory, []);
    const on = bench_(plugin, 1, ['--seed', '1100']);
    assert.equal(on.status, 3, on.stderr);
    assert.ok(on.json.runs[0].failures.some((f: { code: string }) => f.code === 'unrecorded'), JSON.stringify(on.json.runs[0].failures));
  });
});
