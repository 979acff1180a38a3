// planData: which token rows a run trains on. Its contract, tested through its
// exported signature only (how seeds are drawn is the implementation's): the
// probe rows are held out from every run's training, a run's warmup rows are
// not its timed rows, every batch row is a whole row of the benchmark data, and
// runs get different data.
import { strict as assert } from 'assert';
import { planData } from '../src/harness/evaluate';
import type { TokenSet } from '../src/data/tokens';
import { UserError } from '../src/errors';

const SEQ = 8;

/** samples rows whose tokens say where they come from: row r holds r*SEQ .. r*SEQ + SEQ - 1. */
function tokens(samples: number): TokenSet {
  return { samples, seqLen: SEQ, ids: Int32Array.from({ length: samples * SEQ }, (_, i) => i) };
}

/** The data rows a batch buffer holds, in order; fails unless each is a whole, unaltered row. */
function rowsOf(buf: Int32Array, what: string): number[] {
  assert.equal(buf.length % SEQ, 0, `${what}: ${buf.length} tokens is not whole rows of ${SEQ}`);
  const out: number[] = [];
  for (let i = 0; i < buf.length; i += SEQ) {
    const r = buf[i] / SEQ;
    assert.ok(Number.isInteger(r), `${what}: row ${i / SEQ} does not start a data row (token ${buf[i]})`);
    for (let j = 0; j < SEQ; j++) assert.equal(buf[i + j], r * SEQ + j, `${what}: row ${i / SEQ} is not data row ${r} intact`);
    out.push(r);
  }
  return out;
}

type Plan = ReturnType<typeof planData>;
/** One run's data: the timed rows by `seed`, warmup's by a seed of its own. */
function run(plan: Plan, seed: number): { timed: Int32Array; warmup: Int32Array } {
  return plan.forRun(seed, seed * 7919 + 13);
}

describe('planData: the rows each run trains on', function () {
  const o = { probeRows: 4, probeSeed: 99, batchSize: 3, steps: 5, warmupSteps: 2 };

  it('gives the probe, timed and warmup batches their sizes, each row a whole data row', function () {
    const plan = planData(tokens(200), o);
    assert.equal(rowsOf(plan.probe, 'probe').length, o.probeRows);
    const r = run(plan, 1);
    assert.equal(rowsOf(r.timed, 'timed').length, o.steps * o.batchSize);
    assert.equal(rowsOf(r.warmup, 'warmup').length, o.warmupSteps * o.batchSize);
    const none = run(planData(tokens(200), { ...o, warmupSteps: 0 }), 1);
    assert.equal(none.warmup.length, 0);
  });

  it('never trains on a probe row, in any run, warmup included', function () {
    const plan = planData(tokens(60), o);
    const probe = new Set(rowsOf(plan.probe, 'probe'));
    assert.equal(probe.size, o.probeRows, 'the probe repeats a row');
    for (let seed = 0; seed < 200; seed++) {
      const r = run(plan, seed);
      for (const [what, buf] of [['timed', r.timed], ['warmup', r.warmup]] as const) {
        const hit = rowsOf(buf, what).filter((x) => probe.has(x));
        assert.deepEqual(hit, [], `run ${seed}: ${what} data holds probe rows`);
      }
    }
  });

  it("keeps a run's warmup rows apart from its timed rows, and repeats no row", function () {
    const plan = planData(tokens(60), o);
    for (let seed = 0; seed < 200; seed++) {
      const r = run(plan, seed);
      const timed = rowsOf(r.timed, 'timed');
      const warmup = rowsOf(r.warmup, 'warmup');
      assert.equal(new Set(timed).size, timed.length, `run ${seed}: a timed row repeats`);
      assert.equal(new Set(warmup).size, warmup.length, `run ${seed}: a warmup row repeats`);
      const both = warmup.filter((x) => timed.includes(x));
      assert.deepEqual(both, [], `run ${seed}: warmup rows that are also timed rows`);
    }
  });

  it('with exactly enough data, the probe, timed and warmup rows partition it', function () {
    const need = o.probeRows + (o.steps + o.warmupSteps) * o.batchSize;
    const plan = planData(tokens(need), o);
    for (let seed = 0; seed < 20; seed++) {
      const r = run(plan, seed);
      const all = [...rowsOf(plan.probe, 'probe'), ...rowsOf(r.timed, 'timed'), ...rowsOf(r.warmup, 'warmup')].sort((a, b) => a - b);
      assert.deepEqual(all, Array.from({ length: need }, (_, i) => i), `run ${seed}`);
    }
  });

  it('gives different runs different data', function () {
    const plan = planData(tokens(1000), o);
    const seen = new Set<string>();
    for (let seed = 0; seed < 10; seed++) seen.add(rowsOf(run(plan, seed).timed, 'timed').join(','));
    // 15 rows out of 996: ten runs drawing the same sequence by chance is out of the question
    assert.ok(seen.size >= 9, `only ${seen.size} different timed sequences in 10 runs`);
  });

  it('draws the probe by the evaluation: another probe seed holds out other rows, and no fixed rows are always the probe', function () {
    const probes = Array.from({ length: 10 }, (_, k) => rowsOf(planData(tokens(1000), { ...o, probeSeed: k }).probe, 'probe'));
    assert.ok(new Set(probes.map((p) => p.join(','))).size >= 9, 'the probe hardly changes with its seed');
    const always = probes[0].filter((r) => probes.every((p) => p.includes(r)));
    assert.deepEqual(always, [], 'some rows are the probe whatever the seed');
    assert.deepEqual(rowsOf(planData(tokens(1000), o).probe, 'probe'), rowsOf(planData(tokens(1000), o).probe, 'probe'), 'the same seed must give the same probe');
  });

  it('refuses data too small for the probe and one run, saying how much is needed', function () {
    const need = o.probeRows + (o.steps + o.warmupSteps) * o.batchSize; // 25
    assert.throws(
      () => planData(tokens(need - 1), o),
      (e: unknown) => e instanceof UserError && new RegExp(`\\b${need - 1}\\b`).test(e.message) && new RegExp(`\\b${need}\\b`).test(e.message),
    );
  });
});
