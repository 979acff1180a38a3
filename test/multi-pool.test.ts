// Several GPUs on one host, the scheduling half: --gpus parsing into
// evaluation slots, hparams' gpus_per_evaluation, and the validator's worker
// pool (one evaluation per slot at a time, every submission judged exactly
// once, copies never judged side by side). No GPU needed: the slots are names
// and the harness is a stand-in that records what ran when.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import { loadHparams, parseHparams, type Hparams } from '../src/config/hparams';
import { HPARAMS_FILE } from '../src/util/paths';
import { defaultRankDevices, evaluationSlots, parseGpuList } from '../src/harness/devices';
import { silentLogger } from '../src/validator/log';
import { Validator, type EvaluateFn, type FetchFn } from '../src/validator/loop';
import { ValidatorStore } from '../src/validator/store';
import { fakeVerdict, FakeValidatorChain } from './helpers/validator-fakes';
import { removeTmpDir, tmpDir } from './helpers/tmp';

describe('multi-GPU: device lists and evaluation slots', () => {
  it('parses --gpus: indices, cuda:N and cpu; refuses what this host does not have, repeats and mixes', () => {
    assert.deepEqual(parseGpuList('0,1', 2), ['cuda:0', 'cuda:1']);
    assert.deepEqual(parseGpuList('cuda:1, 0', 2), ['cuda:1', 'cuda:0']);
    assert.deepEqual(parseGpuList('cpu,cpu', 0), ['cpu', 'cpu']);
    assert.throws(() => parseGpuList('0,2', 2), /cuda:2 asked for, but this engine sees 2 CUDA device\(s\) \(0 to 1\)/);
    assert.throws(() => parseGpuList('0', 0), /sees no CUDA device/);
    assert.throws(() => parseGpuList('0,0', 2), /cuda:0 is listed twice/);
    assert.throws(() => parseGpuList('0,,1', 2), /comma-separated list/);
    assert.throws(() => parseGpuList('gpu0', 2), /"gpu0" is not a device index/);
    assert.throws(() => parseGpuList('cpu,0', 1), /mixes cpu and CUDA/);
  });

  it('splits devices into slots of gpus_per_evaluation, and says when they do not split', () => {
    assert.deepEqual(evaluationSlots(['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3'], 1), [['cuda:0'], ['cuda:1'], ['cuda:2'], ['cuda:3']]);
    assert.deepEqual(evaluationSlots(['cuda:0', 'cuda:1', 'cuda:2', 'cuda:3'], 2), [['cuda:0', 'cuda:1'], ['cuda:2', 'cuda:3']]);
    assert.throws(() => evaluationSlots(['cuda:0', 'cuda:1', 'cuda:2'], 2), /do not split into evaluations of gpus_per_evaluation = 2/);
    assert.deepEqual(defaultRankDevices('cpu', 1), ['cpu']);
    assert.deepEqual(defaultRankDevices('cuda', 1), ['cuda']);
    assert.deepEqual(defaultRankDevices('cpu', 2), ['cpu', 'cpu']);
    assert.deepEqual(defaultRankDevices('cuda', 2), ['cuda:0', 'cuda:1']);
  });

  it('hparams: gpus_per_evaluation is 1 in the shipped file, required, validated, and must divide the batch', () => {
    const raw = JSON.parse(fs.readFileSync(HPARAMS_FILE, 'utf8'));
    assert.equal(loadHparams(HPARAMS_FILE).gpus_per_evaluation, 1);
    const { gpus_per_evaluation: _, ...without } = raw;
    assert.throws(() => parseHparams(without), /missing key "gpus_per_evaluation"/);
    assert.equal(parseHparams({ ...raw, gpus_per_evaluation: 2 }).gpus_per_evaluation, 2);
    assert.throws(() => parseHparams({ ...raw, gpus_per_evaluation: 0 }), /"gpus_per_evaluation" must be an integer in \[1, 64\], got 0/);
    assert.throws(() => parseHparams({ ...raw, gpus_per_evaluation: 1.5 }), /"gpus_per_evaluation" must be an integer/);
    assert.throws(() => parseHparams({ ...raw, benchmark_batch_size: 16, gpus_per_evaluation: 3 }), /"gpus_per_evaluation" \(3\) must divide "benchmark_batch_size" \(16\)/);
  });
});

describe('multi-GPU: the validator evaluates one submission per slot at a time', () => {
  let dir: string;
  before(() => {
    dir = tmpDir('multi-pool');
  });
  after(() => removeTmpDir(dir));

  const HP: Hparams = { ...loadHparams(HPARAMS_FILE), min_blocks_between_commits: 10, set_weights_interval_blocks: 50, burn_uid: 0 };

  /** A validator over `slots` whose stand-in harness takes `ms` per evaluation and records each one. */
  function rig(name: string, slots: string[][] | undefined, ms: number) {
    const chain = new FakeValidatorChain();
    const store = ValidatorStore.open(`${dir}/${name}`, { network: 'fake', netuid: 3 });
    const code = new Map<string, string>();
    const log: { text: string; slot: string[]; start: number; end: number }[] = [];
    let running = 0;
    let most = 0;
    const evaluate: EvaluateFn = async (file, _progress, slot) => {
      const text = fs.readFileSync(file, 'utf8');
      running++;
      most = Math.max(most, running);
      const start = Date.now();
      await new Promise((r) => setTimeout(r, ms));
      running--;
      log.push({ text, slot, start, end: Date.now() });
      return text.includes('cheat') ? fakeVerdict(null, ['probe loss off']) : fakeVerdict(text.length);
    };
    const fetch: FetchFn = async (p) => Buffer.from(code.get(p.sha256) ?? '');
    const v = new Validator(store, chain, evaluate, silentLogger, { netuid: 3, hparams: HP, dataDir: `${dir}/${name}`, local: true, hotkey: null, fetch, slots });
    const reveal = (hotkey: string, text: string, block: number) => code.set(chain.reveal(hotkey, text, block), text);
    return { chain, store, v, log, reveal, most: () => most };
  }

  it('two cpu slots: two evaluations run at once, on different slots, and every verdict is recorded once', async () => {
    const r = rig('two', [['cpu'], ['cpu']], 500);
    r.reveal('A', 'a'.repeat(100), 10);
    r.reveal('B', 'b'.repeat(150), 20);
    r.reveal('C', 'cheat', 30);
    r.reveal('D', 'd'.repeat(120), 40);
    r.chain.block = 100;
    const summary = await r.v.run({ once: true });
    try {
      assert.equal(summary?.evaluated, 4);
      assert.equal(summary?.accepted, 3);
      assert.equal(summary?.rejected, 1);
      assert.equal(r.most(), 2, 'two evaluations overlapped, never more');
      assert.equal(r.log.length, 4);
      assert.deepEqual(r.log.map((e) => e.text).sort(), ['a'.repeat(100), 'b'.repeat(150), 'cheat', 'd'.repeat(120)].sort());
      // Each evaluation got one slot's devices, and no slot ran two at once.
      for (const e of r.log) assert.deepEqual(e.slot, ['cpu']);
      const rows = r.store.recent(100).reverse();
      assert.deepEqual(rows.map((s) => [s.hotkey, s.state, s.tokens_per_second]), [['A', 'accepted', 100], ['B', 'accepted', 150], ['C', 'rejected', null], ['D', 'accepted', 120]]);
      for (const s of rows) {
        assert.equal(s.attempts, 1, `#${s.id} evaluated once`);
        assert.equal(r.store.runsOf(s.id).filter((x) => x.role === 'submission').length, 1);
      }
      // The leader follows as with one slot: B (150) beat A (100); D (120) does not beat B.
      assert.equal(r.store.lastLeader()?.submission_id, rows[1].id);
    } finally {
      r.store.close();
    }
  });

  it('slots carry their devices to the harness: two slots of two ranks each', async () => {
    const r = rig('ranks', [['cuda:0', 'cuda:1'], ['cuda:2', 'cuda:3']], 200);
    r.reveal('A', 'a'.repeat(100), 10);
    r.reveal('B', 'b'.repeat(150), 20);
    r.chain.block = 100;
    await r.v.run({ once: true });
    try {
      assert.deepEqual(r.log.map((e) => e.slot.join('+')).sort(), ['cuda:0+cuda:1', 'cuda:2+cuda:3']);
      assert.ok(r.log[0].start < r.log[1].end && r.log[1].start < r.log[0].end, 'they overlapped');
    } finally {
      r.store.close();
    }
  });

  it('a copy of code under evaluation waits for its verdict and is then rejected as a duplicate, as with one slot', async () => {
    const r = rig('copy', [['cpu'], ['cpu']], 200);
    r.reveal('A', 'same code', 10);
    r.reveal('B', 'same code', 20);
    r.chain.block = 100;
    await r.v.run({ once: true });
    try {
      assert.equal(r.log.length, 1, 'the code was evaluated once');
      const rows = r.store.recent(100).reverse();
      assert.deepEqual(rows.map((s) => [s.hotkey, s.state, s.reject_code]), [['A', 'accepted', null], ['B', 'rejected', 'duplicate']]);
    } finally {
      r.store.close();
    }
  });

  it('a stop during two evaluations puts both back in the queue without counting the attempts', async () => {
    const r = rig('stop', [['cpu'], ['cpu']], 400);
    r.reveal('A', 'a'.repeat(100), 10);
    r.reveal('B', 'b'.repeat(150), 20);
    r.chain.block = 100;
    const pass = r.v.pass();
    await new Promise((res) => setTimeout(res, 150));
    assert.equal(r.v.current.size, 2);
    assert.equal(r.v.stopNow('SIGTERM'), 'exit');
    const rows = r.store.recent(100).reverse();
    assert.deepEqual(rows.map((s) => [s.hotkey, s.state, s.attempts]), [['A', 'pending', 0], ['B', 'pending', 0]]);
    // A real validator exits here (`evaluate` does on 'exit'). The stand-ins finish anyway, and the verdicts
    // they bring are not recorded: a verdict lands only on an evaluation still under way.
    await pass;
    assert.deepEqual(r.store.recent(100).reverse().map((s) => s.state), ['pending', 'pending']);
    r.store.close();
  });
});
