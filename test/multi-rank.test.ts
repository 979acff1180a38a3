// Several ranks per evaluation (gpus_per_evaluation = 2) through the whole
// harness on the CPU: two runners in one sandbox, Gloo between them, the
// trusted side owning both ranks' parameter memory and one clock over both.
// The data-parallel baseline is accepted against itself; a rank that skips its
// share and ranks that never exchange gradients are rejected.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { loadHparams } from '../src/config/hparams';
import { evaluateSubmissions } from '../src/harness/evaluate';
import type { FailureCode, Verdict } from '../src/harness/types';
import { setupPreset } from '../src/setup/setup';
import { BASELINE } from '../src/submission/source';
import { CONFIG_PATH, HPARAMS_FILE, PROJECT_ROOT } from '../src/util/paths';
import { willCompile } from './helpers/prewarm';
import { removeTmpDir, tmpDir } from './helpers/tmp';

const PLUGINS = path.join(PROJECT_ROOT, 'test', 'plugins-multi');

describe('multi-rank: two ranks with Gloo on the CPU, through the harness', function () {
  this.timeout(1_800_000);
  let tmp: string;
  let benchmarkDir: string;
  const hparams = { ...loadHparams(HPARAMS_FILE), gpus_per_evaluation: 2, runner_timeouts: { start: 120, warmup: 120, timed: 120 } };

  before(() => {
    tmp = tmpDir('multi-rank');
    fs.chmodSync(tmp, 0o755); // the sandbox's own uid must reach the plugins
    benchmarkDir = path.join(tmp, 'benchmark');
    setupPreset({ dir: benchmarkDir, preset: 'tiny', seed: 42, force: false });
  });
  after(() => removeTmpDir(tmp));
  const layers = (): number => JSON.parse(fs.readFileSync(path.join(benchmarkDir, CONFIG_PATH), 'utf8')).num_hidden_layers;

  // Every case against one reference run (the DP baseline on seed 1000): each verdict is what judging it alone gives.
  const CASES = {
    baseline: BASELINE,
    skip_share: path.join(PLUGINS, 'skip_share.cpp'),
    foresight_probe: path.join(PROJECT_ROOT, 'test', 'plugins', 'foresight_probe.cpp'),
    no_allreduce: path.join(PLUGINS, 'no_allreduce.cpp'),
    head_off_rank1: path.join(PLUGINS, 'head_off_rank1.cpp'),
  };
  willCompile(...Object.values(CASES));
  const verdicts = new Map<keyof typeof CASES, Verdict>();
  const judge = async (name: keyof typeof CASES): Promise<Verdict> => {
    if (verdicts.size === 0) {
      const names = Object.keys(CASES) as (keyof typeof CASES)[];
      const all = await evaluateSubmissions({
        submissions: names.map((n) => ({ file: CASES[n], label: n })),
        benchmarkDir,
        hparams,
        device: 'cpu',
        runs: 1,
        steps: 3,
        warmupSteps: 1,
        batchSize: hparams.benchmark_batch_size,
        seed: 1000,
        workDir: path.join(tmp, 'work'),
        runnerEnv: { OMP_NUM_THREADS: '1' },
      });
      names.forEach((n, k) => verdicts.set(n, all[k]));
    }
    return verdicts.get(name) as Verdict;
  };

  const codes = (v: Verdict): FailureCode[] => v.runs.flatMap((r) => r.failures.map((f) => f.code));

  it('accepts the data-parallel baseline against itself, each rank on its half of every batch', async () => {
    const v = await judge('baseline');
    assert.equal(v.accepted, true, v.reasons.join('\n'));
    const run = v.runs[0];
    // Every token of every batch, counted from what the two ranks say they trained on (each its half).
    assert.equal(run.tokens, 3 * hparams.benchmark_batch_size * 128);
    assert.ok(run.checks, 'the run was measured');
    // The CPU is deterministic and the reference is this same code on two ranks: nothing differs.
    assert.equal(run.checks.update_rel_error, 0);
    assert.equal(run.checks.logits_rel_error, 0);
    assert.equal(run.checks.probe_loss, run.checks.reference_probe_loss);
    // Training moved the weights: the check is not vacuous.
    assert.ok(Math.abs(run.checks.probe_loss - run.checks.initial_probe_loss) > 0);
    // The loss head's record holds both ranks' rows, each rank's gradient of its own share's loss, and reads 0
    // against the judge's (which takes each rank's loss apart): a wrong scale or a missing rank would not.
    assert.equal(run.checks.max_head_input_error, 0);
    assert.equal(run.checks.max_head_grad_error, 0);
    assert.equal(run.checks.max_head_trajectory, 0);
    // eslint-disable-next-line no-console
    console.log(`      two ranks: ${run.tokens_per_second?.toFixed(0)} tokens/s (2-core CPU, shared), probe loss ${run.checks.initial_probe_loss.toFixed(4)} -> ${run.checks.probe_loss.toFixed(4)}`);
  });

  it('rejects a rank that puts zeros in the all-reduce instead of its share of the gradient', async () => {
    const v = await judge('skip_share');
    assert.equal(v.accepted, false);
    const got = codes(v);
    // Rejected by verification, not by a crash or the ranks' disagreement (they agree: both applied the same
    // wrong update); among the reasons, the rows rank 1 never trained stand out in their cells' losses.
    const verification: FailureCode[] = ['probe_loss', 'cell_loss', 'batch_loss', 'logits', 'frozen', 'changed_share', 'update_error', 'group_loss', 'head_gradient', 'head_positions', 'layer_positions', 'trajectory', 'loss_head', 'layer_record'];
    assert.ok(got.length > 0 && got.every((c) => verification.includes(c)), `rejected for ${got.join(', ')}: ${v.reasons.join('; ')}`);
    assert.ok(got.includes('cell_loss'), v.reasons.join('; '));
  });

  it('scrubs every rank\'s regions before the spawn and writes no rank\'s timed start or rows before GO (foresight_probe on two ranks)', async () => {
    // foresight_probe crashes its own run when, in any rank, its regions hold anything but zeros and NaN at dlopen,
    // or the timed start or a timed row was there at dlopen or during warmup. It trains each rank apart (one-rank
    // code), so a run that found nothing ends, after DONE, in the ranks' disagreement and in nothing else.
    const v = await judge('foresight_probe');
    assert.deepEqual(codes(v), ['rank_divergence'], v.reasons.join('; '));
    assert.doesNotMatch(v.reasons.join('; '), /residue|foresight/);
  });

  it('records every rank\'s rows of the loss head and the layers: a rank 1 that switches its record off fails loss_head and layer_record', async () => {
    const v = await judge('head_off_rank1');
    assert.equal(v.accepted, false);
    assert.deepEqual([...new Set(codes(v))], ['loss_head', 'layer_record'], v.reasons.join('; '));
    // Rank 1's share of the batch (half its rows), in the first timed step; for the MLPs, in every layer.
    assert.match(v.reasons.join('; '), new RegExp(`${hparams.benchmark_batch_size / 2} row\\(s\\) of timed step 1's batch`));
    assert.match(v.reasons.join('; '), new RegExp(`${(hparams.benchmark_batch_size / 2) * layers()} \\(layer, row\\) pair\\(s\\) of timed step 1`));
  });

  it('rejects ranks that train apart (no all-reduce): rank 1 no longer holds rank 0\'s parameters', async () => {
    const v = await judge('no_allreduce');
    assert.equal(v.accepted, false);
    assert.deepEqual(codes(v), ['rank_divergence'], v.reasons.join('; '));
    assert.match(v.reasons[0], /rank 1's parameters differ from rank 0's/);
  });
});
