// The verdict's checks on a completed run (judge in src/harness/evaluate.ts),
// fed measurements directly: each check fires on what it exists for and only
// then, so every failure code that needs a measurement is seen firing. The
// adversarial suite shows the same codes firing through the whole harness.
import { strict as assert } from 'assert';
import { judge, cellLossChecks, score } from '../src/harness/evaluate';
import type { Thresholds } from '../src/config/hparams';
import type { NativeComparison, NativeRunOutcome } from '../src/engine/native';
import type { FailureCode, RunReport } from '../src/harness/types';

const T: Thresholds = {
  probe_loss_abs: 0.01,
  cell_loss_abs: 0.02,
  batch_loss_abs: 0.02,
  logits_rel_error: 0.05,
  update_rel_error: 0.1,
  kind_update_rel_error: 0.3,
  mlp_update_rel_error: 0.1,
  mlp_pair_energy_excess: 0.5,
  group_loss_shift_abs: 0.0002,
  head_alignment_abs: 0.0005,
  head_position_excess: 1.5,
  head_position_excess_last: 2.5,
  layer_position_excess: 1.5,
  layer_position_excess_last: 2.5,
  head_trajectory_excess: 2,
  mlp_trajectory_excess: 20,
  attention_trajectory_excess: 60,
  head_input_error: 0.05,
  head_grad_error: 0.01,
  layer_forward_error: 0.01,
  layer_backward_error: 0.02,
  layer_small_term_share: 0.05,
  layer_small_term_energy: 0.0005,
  mlp_grad_small_term_excess: 0.72,
  mlp_record_trajectory_excess: 2,
  attention_record_trajectory_excess: 3,
  min_changed_share_ratio: 0.97,
  basis: 'test',
  calibrations: [],
};
const TOKENS = 4 * 16 * 3;
/** A step's loss-head record as an honest run's reads. */
const HEAD_OK = { headInputError: 0.001, headGradError: 0.0005, headRowsMissing: 0 };

function outcome(o: Partial<NativeRunOutcome> = {}): NativeRunOutcome {
  return {
    completed: true, failureCode: '', failureMessage: '', seconds: 1, overheadSeconds: 1, reportedTokens: TOKENS, reportedLoss: 2,
    reportedPeakMemory: 0, probeLoss: 3, initialProbeLoss: 4, checkpointSeconds: null, cellLosses: [2.0, 2.1, 2.2, 2.3],
    trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'model.norm.weight': 0.05 } }, { recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'model.norm.weight': 0.1, 'model.layers.*.self_attn.k_proj.bias': 3 } }], ...o,
  };
}
function cmp(c: Partial<NativeComparison> = {}): NativeComparison {
  return { logitsRelError: 0.01, updateRelError: 0.02, maxTensorRelError: 0.1, kindRelErrors: { 'model.layers.*.self_attn.q_proj.weight': 0.05, 'model.norm.weight': 0.02 }, groupShifts: { mlp: { lastBatch: 0.0001, probe: 0.0001 }, head: { lastBatch: -0.0001, probe: 0 } }, headAlignment: [0.00002, -0.00004, 0.0001], headPositionExcess: [0.1, -0.05, 0.7], layerPositions: [{ kind: 'model.layers.*.mlp.up_proj.weight', excess: 0.1 }, { kind: 'model.layers.*.self_attn.q_proj.weight', excess: -0.05 }, { kind: 'model.layers.*.mlp.down_proj.weight', excess: 0.7 }], changedShare: 0.9, referenceChangedShare: 0.9, frozen: [], layerPairEnergy: [], headPairEnergy: [], layerPairExcess: { 'model.layers.*.mlp.up_proj.weight': 0.1, 'model.layers.*.self_attn.k_proj.weight': 0.4 }, phaseSeconds: {}, changedAfterKill: false, ...c };
}
const codes = (run: Partial<NativeRunOutcome>, c: Partial<NativeComparison> = {}): FailureCode[] =>
  judge(T, outcome(run), outcome(), cmp(c), TOKENS, 1).map((f) => f.code);

const K_UP = 'model.layers.*.mlp.up_proj.weight';

describe('judge: the checks on a completed run', function () {
  it('accepts a run within every threshold', function () {
    assert.deepEqual(codes({ probeLoss: 3.009, cellLosses: [2.01, 2.11, 2.21, 2.31] }, { logitsRelError: 0.049, updateRelError: 0.099, changedShare: 0.88 }), []);
  });

  const cases: Array<[string, FailureCode, Partial<NativeRunOutcome>, Partial<NativeComparison>]> = [
    ['a token count other than served', 'tokens', { reportedTokens: TOKENS - 1 }, {}],
    ['a probe loss off the reference', 'probe_loss', { probeLoss: 3.02 }, {}],
    ['one part of a row left untrained', 'cell_loss', { cellLosses: [2.0, 2.1, 2.25, 2.3] }, {}],
    ['every part of every row of a batch shorted alike', 'batch_loss', { cellLosses: [2.03, 2.13, 2.23, 2.33] }, {}],
    ['logits off the reference', 'logits', {}, { logitsRelError: 0.06 }],
    ['NaN logits', 'logits', {}, { logitsRelError: NaN }],
    ['a frozen tensor', 'frozen', {}, { frozen: ['model.norm.weight'] }],
    ['too few parameters changed', 'changed_share', {}, { changedShare: 0.87 }],
    ['an update off the reference', 'update_error', {}, { updateRelError: 0.2 }],
    ['lm_head\'s step far from the judge\'s own (an estimated lm_head gradient)', 'trajectory', { trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'lm_head.weight': 0.5 } }, { recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'lm_head.weight': 2.1, 'model.norm.weight': 0.1 } }] }, {}],
    ['a recorded step no AdamW step can make (a fabricated state)', 'unreachable', { trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: {} }, { recorded: true, outOfReach: 128, ...HEAD_OK, kinds: { 'lm_head.weight': 0 } }] }, {}],
    ['a NaN lm_head step', 'trajectory', { trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'lm_head.weight': NaN } }] }, {}],
    ['a step not recorded', 'unrecorded', { trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'model.norm.weight': 0.05 } }, { recorded: false, outOfReach: 0, ...HEAD_OK, kinds: {} }] }, {}],
    ['one kind of tensor updated off the reference in every layer', 'update_error', {}, { kindRelErrors: { 'model.layers.*.self_attn.q_proj.weight': 0.31, 'model.norm.weight': 0.02 } }],
    ['a NaN update of one kind', 'update_error', {}, { kindRelErrors: { 'model.layers.*.self_attn.q_proj.weight': NaN } }],
    ['the largest kind error while a larger one sits on the key bias', 'update_error', {}, { kindRelErrors: { 'model.layers.*.self_attn.k_proj.bias': 0.9, 'model.layers.*.self_attn.k_proj.weight': 0.31 } }],
    ['an MLP kind updated off the reference past the MLP\'s own limit, under the general one (a count-sketched weight gradient)', 'update_error', {}, { kindRelErrors: { 'model.layers.*.mlp.gate_proj.weight': 0.12, 'model.norm.weight': 0.02 } }],
    ['one group of tensors trained short of the last batch (stale gradients)', 'group_loss', {}, { groupShifts: { mlp: { lastBatch: 0.0009, probe: -0.0001 }, head: { lastBatch: 0.3, probe: 0.3 } } }],
    ['one group of tensors trained past the last batch (an over-update)', 'group_loss', {}, { groupShifts: { head: { lastBatch: -0.0005, probe: -0.0002 } } }],
    ['a NaN group shift', 'group_loss', {}, { groupShifts: { mlp: { lastBatch: NaN, probe: 0 } } }],
    ['lm_head moved along one batch\'s own loss-head gradient (another batch\'s reused)', 'head_gradient', {}, { headAlignment: [0.00002, 0.0011, -0.0016] }],
    ['a NaN head alignment', 'head_gradient', {}, { headAlignment: [0, NaN] }],
    ['lm_head moved along single positions\' own loss-head gradients (a sampled estimate of the dense part)', 'head_positions', {}, { headPositionExcess: [0.2, 4.1, 0.3] }],
    ['a NaN position excess', 'head_positions', {}, { headPositionExcess: [NaN, 0] }],
    ['the last batch\'s positions past their own limit', 'head_positions', {}, { headPositionExcess: [0.2, 0.3, 2.6] }],
    ['an MLP weight moved along the last batch\'s single positions\' own gradients (a gradient from a sample of positions)', 'layer_positions', {}, { layerPositions: [{ kind: K_UP, excess: 0.2 }, { kind: K_UP, excess: 0.3 }, { kind: K_UP, excess: 3.2 }] }],
    ['a NaN layer position excess', 'layer_positions', {}, { layerPositions: [{ kind: K_UP, excess: NaN }, { kind: K_UP, excess: 0 }] }],
    ['an earlier batch\'s layer positions past the stricter limit', 'layer_positions', {}, { layerPositions: [{ kind: K_UP, excess: 1.6 }, { kind: K_UP, excess: 0.3 }, { kind: K_UP, excess: 0.3 }] }],
    ['an MLP weight whose difference lies along the data between mismatched positions (a count-sketched gradient)', 'layer_positions', {}, { layerPairExcess: { [K_UP]: 0.9 } }],
    ['a NaN pair excess', 'layer_positions', {}, { layerPairExcess: { [K_UP]: NaN } }],
    ['memory that changed after the kill', 'late_write', {}, { changedAfterKill: true }],
  ];
  it('the MLP\'s kinds have their own, tighter limit; other kinds keep the general one', function () {
    assert.deepEqual(codes({}, { kindRelErrors: { 'model.layers.*.self_attn.q_proj.weight': 0.12, 'model.layers.*.mlp.up_proj.weight': 0.09 } }), []);
    const [f] = judge(T, outcome(), outcome(), cmp({ kindRelErrors: { 'model.layers.*.mlp.down_proj.weight': 0.11 } }), TOKENS, 1);
    assert.match(f.message, /mlp\.down_proj\.weight.*0\.110 relative \(allowed 0\.1 for the MLP's kinds\)/);
  });
  it('the pair-energy limit reads the MLP\'s kinds only and names the kind', function () {
    assert.deepEqual(codes({}, { layerPairExcess: { [K_UP]: 0.49, 'model.layers.*.self_attn.v_proj.weight': 3 } }), []);
    const [f] = judge(T, outcome(), outcome(), cmp({ layerPairExcess: { 'model.layers.*.mlp.down_proj.weight': 0.8 } }), TOKENS, 1);
    assert.match(f.message, /mlp\.down_proj\.weight.*mismatched positions of the timed data 0\.800 more .*\(allowed 0\.5\)/);
  });
  it('position check: the last batch has its own limit, an earlier batch the stricter one', function () {
    assert.deepEqual(codes({}, { headPositionExcess: [0.2, 0.3, 2.4] }), []);
    assert.deepEqual(codes({}, { headPositionExcess: [0.2, 2.4, 0.3] }), ['head_positions']);
    const [f] = judge(T, outcome(), outcome(), cmp({ headPositionExcess: [1.6, 0.3, 3.5] }), TOKENS, 1);
    assert.match(f.message, /timed batch 3's .* \(allowed 2\.5 on the last batch\)/); // 3.5 / 2.5 is further over than 1.6 / 1.5
  });
  it('layer position check: names the worst kind and batch, the last batch against its own limit', function () {
    const layers = (e: number[]) => ({ layerPositions: e.map((excess) => ({ kind: K_UP, excess })) });
    assert.deepEqual(codes({}, layers([0.2, 0.3, 2.4])), []);
    const [f] = judge(T, outcome(), outcome(), cmp(layers([1.6, 0.3, 3.5])), TOKENS, 1);
    assert.equal(f.code, 'layer_positions');
    assert.match(f.message, /^model\.layers\.\*\.mlp\.up_proj\.weight's .*timed batch 3's .* \(allowed 2\.5 on the last batch\)/);
  });
  it('group check: a group that moves the last batch\'s loss as far as the probe\'s passes, however far (honest chaos on the GPU)', function () {
    assert.deepEqual(codes({}, { groupShifts: { mlp: { lastBatch: 0.21, probe: 0.2099 }, attention: { lastBatch: -0.06, probe: -0.0601 } } }), []);
  });
  it('leaves the key projection\'s bias out of the per-kind check (its true gradient is zero: its update is rounding noise)', function () {
    assert.deepEqual(codes({}, { kindRelErrors: { 'model.layers.*.self_attn.k_proj.bias': 0.9, 'model.layers.*.self_attn.k_proj.weight': 0.29 } }), []);
  });

  it('lm_head\'s trajectory limit: the worst step is named; a limit of null (CUDA, no trajectory recorded) is not applied', function () {
    const far: Partial<NativeRunOutcome> = { trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'lm_head.weight': 0.3 } }, { recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'lm_head.weight': 5, 'model.norm.weight': 9 } }] };
    const [f] = judge(T, outcome(far), outcome(), cmp(), TOKENS, 1);
    assert.equal(f.code, 'trajectory');
    assert.match(f.message, /^at timed step 2, lm_head's step lands 5\.00 units .* \(allowed 2\)/);
    assert.deepEqual(judge({ ...T, head_trajectory_excess: null }, outcome(far), outcome(), cmp(), TOKENS, 1), []);
    // Other kinds are reported, not judged: the norm's 9 above fails nothing by itself.
    assert.deepEqual(codes({ trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: { 'model.norm.weight': 9 } }] }), []);
  });
  it('the MLP\'s trajectory limit: an MLP kind over it fails, the attention\'s as far does not (its own limit is wider); null is not applied', function () {
    const at = (kinds: Record<string, number>): Partial<NativeRunOutcome> => ({ trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: {} }, { recorded: true, outOfReach: 0, ...HEAD_OK, kinds }] });
    assert.deepEqual(codes(at({ [K_UP]: 19, 'model.layers.*.self_attn.k_proj.weight': 40 })), []);
    const [f, ...rest] = judge(T, outcome(at({ [K_UP]: 25 })), outcome(), cmp(), TOKENS, 1);
    assert.equal(rest.length, 0);
    assert.equal(f.code, 'trajectory');
    assert.match(f.message, /^at timed step 2, model\.layers\.\*\.mlp\.up_proj\.weight's step, pooled over the layers, lands 25\.0 units .* \(allowed 20 for the MLP's kinds\)/);
    assert.deepEqual(judge({ ...T, mlp_trajectory_excess: null }, outcome(at({ [K_UP]: 25 })), outcome(), cmp(), TOKENS, 1), []);
  });
  it('the attention\'s trajectory limit: a q, k, v or o kind over it fails, a norm or a bias as far does not; null is not applied', function () {
    const at = (kinds: Record<string, number>): Partial<NativeRunOutcome> => ({ trajectory: [{ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: {} }, { recorded: true, outOfReach: 0, ...HEAD_OK, kinds }, { recorded: true, outOfReach: 0, ...HEAD_OK, kinds: {} }] });
    assert.deepEqual(codes(at({ 'model.layers.*.self_attn.q_proj.weight': 59, 'model.layers.*.self_attn.q_proj.bias': 900, 'model.layers.*.input_layernorm.weight': 900 })), []);
    for (const kind of ['q', 'k', 'v', 'o']) {
      const name = `model.layers.*.self_attn.${kind}_proj.weight`;
      const [f, ...rest] = judge(T, outcome(at({ [name]: 765 })), outcome(), cmp(), TOKENS, 1);
      assert.equal(rest.length, 0, kind);
      assert.equal(f.code, 'trajectory');
      assert.equal(f.message.startsWith(`at timed step 2, ${name}'s step, pooled over the layers, lands 765 units`), true, f.message);
      assert.match(f.message, /\(allowed 60 for the attention's kinds\)/);
    }
    assert.deepEqual(judge({ ...T, attention_trajectory_excess: null }, outcome(at({ 'model.layers.*.self_attn.k_proj.weight': 765 })), outcome(), cmp(), TOKENS, 1), []);
  });
  it('the loss head\'s record: missing rows fail alone; then its input and its gradient each against their own limit, the worst step named; null is not applied', function () {
    const step = (head: Partial<typeof HEAD_OK>) => ({ recorded: true, outOfReach: 0, ...HEAD_OK, ...head, kinds: {} });
    const at = (...heads: Partial<typeof HEAD_OK>[]): Partial<NativeRunOutcome> => ({ trajectory: heads.map(step) });
    assert.deepEqual(codes(at({}, { headInputError: 0.049, headGradError: 0.0099 })), []);
    const [missing, ...none] = judge(T, outcome(at({}, { headRowsMissing: 3, headInputError: Infinity, headGradError: Infinity })), outcome(), cmp(), TOKENS, 1);
    assert.equal(none.length, 0);
    assert.equal(missing.code, 'loss_head');
    assert.match(missing.message, /^3 row\(s\) of timed step 2's batch have no finite record .* data\.record_loss_head\(\)/);
    const [input, grad, ...rest] = judge(T, outcome(at({ headGradError: 0.02 }, { headInputError: 0.3 }, { headGradError: 0.011 })), outcome(), cmp(), TOKENS, 1);
    assert.equal(rest.length, 0);
    assert.deepEqual([input.code, grad.code], ['loss_head', 'loss_head']);
    assert.match(input.message, /^at timed step 2, the loss head's recorded input differs .* by 0\.300 relative \(allowed 0\.05\)/);
    assert.match(grad.message, /^at timed step 1, the loss head's recorded gradient differs .* by 0\.0200 relative \(allowed 0\.01\)/);
    // NaN counts as furthest.
    assert.deepEqual(codes(at({ headGradError: NaN })), ['loss_head']);
    assert.deepEqual(judge({ ...T, head_input_error: null, head_grad_error: null }, outcome(at({ headInputError: 0.3, headGradError: 0.3 })), outcome(), cmp(), TOKENS, 1), []);
    // A step whose start was not recorded is the unrecorded failure's, not this one's.
    assert.deepEqual(codes({ trajectory: [{ ...step({ headRowsMissing: 16 }), recorded: false }] }), ['unrecorded']);
  });

  it('the layers\' record: missing (layer, row) pairs fail alone; then its forward, its backward and its record-judged MLP steps each against their own limit; a run without it is not read; null is not applied', function () {
    const step = (rec: { layerForwardError?: number; layerBackwardError?: number; layerSmallTerms?: number; layerSmallEnergy?: number; mlpGradSmallTerms?: number; layerRowsMissing?: number; recordKinds?: Record<string, number> }) => ({ recorded: true, outOfReach: 0, ...HEAD_OK, kinds: {}, layerForwardError: 0, layerBackwardError: 0.005, layerSmallTerms: 0.003, layerSmallEnergy: 0.00003, mlpGradSmallTerms: 0.5, layerRowsMissing: 0, recordKinds: { [K_UP]: 0.5 }, ...rec });
    const at = (...recs: Parameters<typeof step>[0][]): Partial<NativeRunOutcome> => ({ trajectory: recs.map(step) });
    assert.deepEqual(codes(at({}, { layerForwardError: 0.0099, layerBackwardError: 0.0199, recordKinds: { [K_UP]: 1.99, 'model.layers.*.input_layernorm.weight': 50 } })), []);
    const [missing, ...none] = judge(T, outcome(at({}, { layerRowsMissing: 5, layerForwardError: Infinity })), outcome(), cmp(), TOKENS, 1);
    assert.equal(none.length, 0);
    assert.equal(missing.code, 'layer_record');
    assert.match(missing.message, /^5 \(layer, row\) pair\(s\) of timed step 2 have no finite record .* data\.record_layer\(\) and data\.record_layer_grad\(\)/);
    const [forward, backward, steps, ...rest] = judge(T, outcome(at({ layerForwardError: 0.02 }, { layerBackwardError: 0.5, recordKinds: { 'model.layers.*.mlp.down_proj.weight': 7 } })), outcome(), cmp(), TOKENS, 1);
    assert.equal(rest.length, 0);
    assert.deepEqual([forward.code, backward.code, steps.code], ['layer_record', 'layer_record', 'trajectory']);
    assert.match(forward.message, /^at timed step 1, a value of the layers' recorded forward differs .* by 0\.0200 relative on its worst row \(allowed 0\.01\)/);
    assert.match(backward.message, /^at timed step 2, a value of the layers' recorded backward differs .* by 0\.500 relative on its worst row \(allowed 0\.02\)/);
    assert.match(steps.message, /^at timed step 2, model\.layers\.\*\.mlp\.down_proj\.weight's step, pooled over the layers, lands 7\.00 units .* \(allowed 2\)/);
    assert.deepEqual(codes(at({ layerForwardError: NaN })), ['layer_record']);
    // The attention's record-judged steps: each kind's median over the steps from the second, against their own limit
    // (3 here); one step far off is not enough, the MLP's kinds are not read by it.
    const Q = 'model.layers.*.self_attn.q_proj.weight', KP = 'model.layers.*.self_attn.k_proj.weight';
    assert.deepEqual(codes(at({ recordKinds: { [Q]: 50 } }, { recordKinds: { [Q]: 2.99, [K_UP]: 1.99 } })), [], 'the first step is not read');
    assert.deepEqual(codes(at({}, { recordKinds: { [KP]: 9 } }, { recordKinds: { [KP]: 1 } }, { recordKinds: { [KP]: 2 } })), [], 'median 2 of 9, 1, 2');
    const [attention, ...none2] = judge(T, outcome(at({}, { recordKinds: { [KP]: 3.5, [K_UP]: 1.5 } }, { recordKinds: { [KP]: 4, [Q]: 1 } }, { recordKinds: { [KP]: 1 } })), outcome(), cmp(), TOKENS, 1);
    assert.equal(none2.length, 0);
    assert.equal(attention.code, 'trajectory');
    assert.match(attention.message, /^over the 3 timed steps from the second, model\.layers\.\*\.self_attn\.k_proj\.weight's steps, pooled over the layers, land a median 3\.50 units .* \(allowed 3\): the attention's weight gradients were not computed from it/);
    assert.deepEqual(codes(at({}, { recordKinds: { 'model.layers.*.self_attn.o_proj.weight': NaN } }, { recordKinds: { 'model.layers.*.self_attn.o_proj.weight': 0 } })), ['trajectory']);
    // By direction: the record lacks a product's small-term part.
    const [small, ...none3] = judge(T, outcome(at({}, { layerSmallTerms: 1.01 })), outcome(), cmp(), TOKENS, 1);
    assert.equal(none3.length, 0);
    assert.equal(small.code, 'layer_record');
    assert.match(small.message, /^at timed step 2, the layers' record lacks 1\.01 of an MLP product's small-term part .* allowed 0\.05\)/);
    assert.deepEqual(codes(at({ layerSmallTerms: 0.049 })), []);
    // By energy: the links' error lies along their small terms (dropped without bias).
    const [energy, ...none4] = judge(T, outcome(at({ layerSmallEnergy: 0.0041 }, {})), outcome(), cmp(), TOKENS, 1);
    assert.equal(none4.length, 0);
    assert.equal(energy.code, 'layer_record');
    assert.match(energy.message, /^at timed step 1, an MLP link's error in the layers' record has 0\.00410 relative of the value in excess along its small terms' weight vectors \(allowed 0\.0005;/);
    assert.deepEqual(codes(at({ layerSmallEnergy: 0.00049 })), []);
    assert.deepEqual(codes(at({ layerSmallEnergy: NaN })), ['layer_record']);
    // The weight gradients' small-term part missing from the record-judged steps.
    const [grad, ...none5] = judge(T, outcome(at({}, { mlpGradSmallTerms: 2.97 })), outcome(), cmp(), TOKENS, 1);
    assert.equal(none5.length, 0);
    assert.equal(grad.code, 'trajectory');
    assert.match(grad.message, /^by timed step 2, 2\.97 times as many of the MLP weights' elements land where only the judge's AdamW step .* without a small-term part lands .* \(allowed 0\.72\)/);
    assert.deepEqual(codes(at({ mlpGradSmallTerms: 0.71 })), []);
    assert.deepEqual(codes(at({ mlpGradSmallTerms: Infinity })), ['trajectory']);
    assert.deepEqual(judge({ ...T, layer_forward_error: null, layer_backward_error: null, layer_small_term_share: null, layer_small_term_energy: null, mlp_record_trajectory_excess: null, attention_record_trajectory_excess: null, mlp_grad_small_term_excess: null }, outcome(at({ layerForwardError: 0.3, layerBackwardError: 1, layerSmallTerms: 1, layerSmallEnergy: 9, mlpGradSmallTerms: 1, recordKinds: { [K_UP]: 90 } })), outcome(), cmp(), TOKENS, 1), []);
    assert.deepEqual(codes({}), [], 'no layers\' record taken: nothing read');
    assert.deepEqual(codes({ trajectory: [{ ...step({ layerRowsMissing: 16 }), recorded: false }] }), ['unrecorded']);
  });

  for (const [what, code, run, c] of cases) {
    it(`fails ${what} with ${code}, and with nothing else`, function () {
      assert.deepEqual(codes(run, c), [code]);
    });
  }

  it('cell and batch loss: a common shift is the batch check\'s, a cell above its batch\'s lower quartile the cell check\'s', function () {
    const near = (a: number, b: number) => Math.abs(a - b) < 1e-12;
    const ref = [2.0, 2.1, 2.2, 2.3];
    const even = cellLossChecks([2.5, 2.6, 2.7, 2.8], ref, 1);
    assert.ok(near(even.cell, 0) && near(even.shift, 0.5), JSON.stringify(even));
    // Half of every batch's cells untrained: a median centre would split the difference; the lower quartile does not.
    const half = cellLossChecks([2.0, 2.1, 2.5, 2.6], ref, 1);
    assert.ok(near(half.cell, 0.3) && near(half.shift, 0.15), JSON.stringify(half));
    // Two batches: the second's outlier is found against its own batch, and the larger shift of the two counts.
    const two = cellLossChecks([2.0, 2.1, 2.2, 2.3, 3.0, 3.1, 3.2, 3.6], [...ref, 3.0, 3.1, 3.2, 3.3], 2);
    assert.ok(near(two.cell, 0.3) && near(two.shift, 0.075), JSON.stringify(two));
    // Training more than the reference is no shortfall.
    assert.ok(cellLossChecks([1.9, 2.0, 2.1, 2.2], ref, 1).shift < 0);
    assert.deepEqual(cellLossChecks([2.0, 2.1], ref, 1), { cell: Infinity, shift: Infinity });
    assert.deepEqual(cellLossChecks([2.0, NaN, 2.2, 2.3], ref, 1), { cell: Infinity, shift: Infinity });
    assert.deepEqual(cellLossChecks([2.0, 2.1, 2.2], [2.0, 2.1, 2.2], 2), { cell: Infinity, shift: Infinity });
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
