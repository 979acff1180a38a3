// The verdict's checks on a completed run (judge in src/harness/evaluate.ts),
// fed measurements directly: each check fires on what it exists for and only
// then, so every failure code that needs a measurement is seen firing. The
// adversarial suite shows the same codes firing through the whole harness.
import { strict as assert } from 'assert';
import { judge, rowLossDeviation, score } from '../src/harness/evaluate';
import type { Thresholds } from '../src/config/hparams';
import type { NativeComparison, NativeRunOutcome } from '../src/engine/native';
import type { FailureCode, RunReport } from '../src/harness/types';

const T: Thresholds = {
  probe_loss_abs: 0.01,
  row_loss_abs: 0.02,
  logits_rel_error: 0.05,
  update_rel_error: 0.1,
  min_changed_share_ratio: 0.97,
  basis: 'test',
  calibrations: [],
};
const TOKENS = 4 * 16 * 3;

function outcome(o: Partial<NativeRunOutcome> = {}): NativeRunOutcome {
  return {
    completed: true, failureCode: '', failureMessage: '', seconds: 1, overheadSeconds: 1, reportedTokens: TOKENS, reportedLoss: 2,
    reportedPeakMemory: 0, probeLoss: 3, initialProbeLoss: 4, checkpointSeconds: null, lastBatchRowLosses: [2.0, 2.1, 2.2, 2.3], ...o,
  };
}
function cmp(c: Partial<NativeComparison> = {}): NativeComparison {
  return { logitsRelError: 0.01, updateRelError: 0.02, maxTensorRelError: 0.1, changedShare: 0.9, referenceChangedShare: 0.9, frozen: [], changedAfterKill: false, ...c };
}
const codes = (run: Partial<NativeRunOutcome>, c: Partial<NativeComparison> = {}): FailureCode[] =>
  judge(T, outcome(run), outcome(), cmp(c), TOKENS).map((f) => f.code);

describe('judge: the checks on a completed run', function () {
  it('accepts a run within every threshold', function () {
    assert.deepEqual(codes({ probeLoss: 3.009, lastBatchRowLosses: [2.01, 2.11, 2.21, 2.31] }, { logitsRelError: 0.049, updateRelError: 0.099, changedShare: 0.88 }), []);
  });

  const cases: Array<[string, FailureCode, Partial<NativeRunOutcome>, Partial<NativeComparison>]> = [
    ['a token count other than served', 'tokens', { reportedTokens: TOKENS - 1 }, {}],
    ['a probe loss off the reference', 'probe_loss', { probeLoss: 3.02 }, {}],
    ['one row of the last batch left untrained', 'row_loss', { lastBatchRowLosses: [2.0, 2.1, 2.25, 2.3] }, {}],
    ['logits off the reference', 'logits', {}, { logitsRelError: 0.06 }],
    ['NaN logits', 'logits', {}, { logitsRelError: NaN }],
    ['a frozen tensor', 'frozen', {}, { frozen: ['model.norm.weight'] }],
    ['too few parameters changed', 'changed_share', {}, { changedShare: 0.87 }],
    ['an update off the reference', 'update_error', {}, { updateRelError: 0.2 }],
    ['memory that changed after the kill', 'late_write', {}, { changedAfterKill: true }],
  ];
  for (const [what, code, run, c] of cases) {
    it(`fails ${what} with ${code}, and with nothing else`, function () {
      assert.deepEqual(codes(run, c), [code]);
    });
  }

  it('row loss: a shift common to every row is not a row standing out; missing or NaN rows are', function () {
    assert.equal(rowLossDeviation([2.5, 2.6, 2.7], [2.0, 2.1, 2.2]), 0);
    assert.ok(Math.abs(rowLossDeviation([2.0, 2.1, 2.5], [2.0, 2.1, 2.2]) - 0.3) < 1e-12);
    assert.equal(rowLossDeviation([2.0, 2.1], [2.0, 2.1, 2.2]), Infinity);
    assert.equal(rowLossDeviation([2.0, NaN, 2.2], [2.0, 2.1, 2.2]), Infinity);
  });
});

describe('score: the verdict over runs', function () {
  const run = (tps: number, failures: Array<{ code: FailureCode; message: string }> = []): RunReport => ({
    seed: 1, ok: failures.length === 0, failures, seconds: 1000 / tps, tokens: 1000, tokens_per_second: tps, overhead_seconds: 1, checkpoint_seconds: null,
    step_seconds: 1, reported_loss: 1, reported_peak_memory_bytes: 0, checks: null,
  });

  it('is the median tokens/s of the runs, and MFU is 6 x parameters x tokens/s over the peak', function () {
    const s = score([run(100), run(300), run(200)], 3, 1e9, 1);
    assert.equal(s.accepted, true);
    assert.equal(s.tokens_per_second, 200);
    assert.ok(Math.abs((s.mfu as number) - (6 * 1e9 * 200) / 1e12) < 1e-12);
    assert.equal(score([run(100), run(300)], 2, 1e9).tokens_per_second, 200);
    assert.equal(score([run(100)], 1, 1e9).mfu, null, 'no peak, no MFU');
  });

  it('rejects a submission whose second run alone failed: every run must pass', function () {
    const s = score([run(100), run(900, [{ code: 'probe_loss', message: 'off' }])], 2, 1e9, 1);
    assert.equal(s.accepted, false);
    assert.equal(s.tokens_per_second, null);
    assert.deepEqual(s.reasons, ['run 2: probe_loss: off']);
  });

  it('rejects a submission with fewer runs than asked for', function () {
    assert.equal(score([run(100)], 2, 1e9).accepted, false);
  });
});
