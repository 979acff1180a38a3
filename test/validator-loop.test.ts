// The validator's loop against an in-memory network and a stand-in harness:
// discovery, hostile and rate-limited commitments, copies, deregistration,
// fetch and harness failures, outages, the leader, weights, and recovery.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { loadHparams, type Hparams } from '../src/config/hparams';
import { HPARAMS_FILE } from '../src/util/paths';
import { FetchError } from '../src/validator/fetch';
import { silentLogger } from '../src/validator/log';
import { Validator, type EvaluateFn, type FetchFn, type ValidatorOptions } from '../src/validator/loop';
import { ValidatorStore } from '../src/validator/store';
import { buildStatus } from '../src/validator/report';
import { fakeVerdict, FakeValidatorChain } from './helpers/validator-fakes';
import { removeTmpDir, tmpDir } from './helpers/tmp';

const HP: Hparams = {
  ...loadHparams(HPARAMS_FILE),
  min_blocks_between_commits: 10,
  set_weights_interval_blocks: 50,
  burn_rate: 0.95,
  burn_uid: 0,
};

interface Rig {
  dir: string;
  chain: FakeValidatorChain;
  store: ValidatorStore;
  code: Map<string, string>;
  evaluated: string[];
  /** verdict per code text: tps, or null for rejected; a thrown error for a harness failure */
  verdicts: Map<string, number | null | Error>;
  fetchFails: Map<string, FetchError>;
  v: Validator;
}

function rig(opts: Partial<ValidatorOptions> = {}): Rig {
  const dir = tmpDir('validator-loop');
  const chain = new FakeValidatorChain();
  const store = ValidatorStore.open(dir, { network: 'fake', netuid: 3 });
  const r = { dir, chain, store, code: new Map<string, string>(), evaluated: [] as string[], verdicts: new Map(), fetchFails: new Map() } as unknown as Rig;
  const evaluate: EvaluateFn = async (file, progress) => {
    const text = fs.readFileSync(file, 'utf8');
    r.evaluated.push(text);
    progress('run 1/1: submission: timed');
    const v = r.verdicts.get(text);
    if (v instanceof Error) throw v;
    return v === undefined ? fakeVerdict(100) : v === null ? fakeVerdict(null, ['probe loss off']) : fakeVerdict(v);
  };
  const fetch: FetchFn = async (p) => {
    const f = r.fetchFails.get(p.sha256);
    if (f) throw f;
    const text = [...r.code.values()].find((c) => require('crypto').createHash('sha256').update(c).digest('hex') === p.sha256);
    if (text === undefined) throw new FetchError('no such object', false);
    return Buffer.from(text);
  };
  r.v = new Validator(store, chain, evaluate, silentLogger, { netuid: 3, hparams: HP, dataDir: dir, local: true, hotkey: null, fetch, outageBackoffMs: 5, ...opts });
  return r;
}

function reveal(r: Rig, hotkey: string, text: string, block: number): string {
  r.code.set(text, text);
  return r.chain.reveal(hotkey, text, block);
}

const stateOf = (r: Rig) => r.store.recent(100).reverse().map((s) => [s.hotkey, s.state, s.reject_code]);

describe('validator: the loop', () => {
  const rigs: Rig[] = [];
  const make = (o: Partial<ValidatorOptions> = {}) => {
    const r = rig(o);
    rigs.push(r);
    return r;
  };
  after(() => {
    for (const r of rigs) {
      r.store.close();
      removeTmpDir(r.dir);
    }
  });

  it('discovers, evaluates in commitment order, picks the leader and sets weights; never judges twice', async () => {
    const r = make();
    reveal(r, 'B', 'code-b', 20);
    reveal(r, 'A', 'code-a', 10);
    reveal(r, 'C', 'code-cheat', 30);
    r.verdicts.set('code-a', 100).set('code-b', 150).set('code-cheat', null);
    const s = await r.v.pass();
    assert.deepEqual([s.discovered, s.evaluated, s.accepted, s.rejected, s.pending], [3, 3, 2, 1, 0]);
    assert.deepEqual(r.evaluated, ['code-a', 'code-b', 'code-cheat']);
    assert.deepEqual(stateOf(r), [['A', 'accepted', null], ['B', 'accepted', null], ['C', 'rejected', 'verification']]);
    const leader = r.v.leader();
    assert.equal(leader?.hotkey, 'B');
    // Weights were due at the start (none yet: all to burn) and are not due again within the interval.
    assert.equal(r.chain.weightCalls.length, 1);
    assert.deepEqual([r.chain.weightCalls[0].uids, r.chain.weightCalls[0].weights], [[0], [65535]]);
    r.chain.block += HP.set_weights_interval_blocks;
    await r.v.pass();
    const w = r.chain.weightCalls[1];
    const bUid = r.chain.neuronList.find((n) => n.hotkey === 'B')!.uid;
    assert.deepEqual([w.uids, w.weights], [[0, bUid], [65535, 3449]]);
    assert.equal(r.evaluated.length, 3, 'a second pass evaluates nothing again');
    const st = buildStatus(r.store, HP, 10);
    assert.equal(st.leader?.hotkey, 'B');
    assert.deepEqual(st.leaderboard.map((x) => x.hotkey), ['B', 'A']);
    assert.match(st.recent.find((x) => x.hotkey === 'C')!.reasons[0], /probe_loss/);
    assert.deepEqual(st.recent.find((x) => x.hotkey === 'A')!.seeds, [42]);
    assert.equal(st.weights?.status, 'sent');
    assert.equal(r.store.leaders(10).length, 2, 'A led first, then B');
  });

  it('records hostile and rate-limited commitments as rejected with the reason, and goes on', async () => {
    const r = make();
    r.chain.neuronList.push({ uid: 5, hotkey: 'H' });
    r.chain.commitments.push({ hotkey: 'H', block: 11, bytes: Buffer.from('{"v":1,"sha256":"x"') });
    r.chain.neuronList.push({ uid: 6, hotkey: 'Big' });
    r.chain.commitments.push({ hotkey: 'Big', block: 12, bytes: Buffer.alloc(5 << 20, 0x7b) });
    reveal(r, 'A', 'a1', 10);
    reveal(r, 'A', 'a2', 15); // 5 blocks later: under min_blocks_between_commits (10)
    reveal(r, 'A', 'a3', 21); // 11 after the last counted one
    const s = await r.v.pass();
    assert.equal(s.discovered, 5);
    assert.deepEqual(stateOf(r), [['A', 'accepted', null], ['H', 'rejected', 'invalid_commitment'], ['Big', 'rejected', 'invalid_commitment'], ['A', 'rejected', 'rate_limited'], ['A', 'accepted', null]]);
    const big = r.store.recent(10).find((x) => x.hotkey === 'Big')!;
    assert.ok(big.commitment_hex.length < 300, 'a 5 MiB commitment is not stored whole');
    assert.match(big.reasons!, /over the chain's 1024/);
    assert.equal((await r.v.pass()).discovered, 0, 'and is recognised on the next pass');
    const limited = r.store.recent(10).find((x) => x.reject_code === 'rate_limited')!;
    assert.match(limited.reasons!, /5 blocks after .*min_blocks_between_commits is 10/);
    assert.deepEqual(r.evaluated, ['a1', 'a3']);
  });

  it('rejects a later copy of judged code without evaluating it, and a deregistered hotkey\'s submission', async () => {
    const r = make();
    reveal(r, 'A', 'same', 10);
    reveal(r, 'B', 'same', 20);
    await r.v.pass();
    assert.deepEqual(stateOf(r), [['A', 'accepted', null], ['B', 'rejected', 'duplicate']]);
    assert.equal(r.evaluated.length, 1);

    reveal(r, 'C', 'c-code', 30);
    await r.v.discover(await r.chain.neurons());
    r.chain.neuronList = r.chain.neuronList.filter((n) => n.hotkey !== 'C');
    await r.v.pass();
    assert.equal(r.store.recent(1)[0].reject_code, 'deregistered');
    assert.equal(r.evaluated.length, 1);
  });

  it('retries a failing download with backoff, then rejects; a hash mismatch is rejected at once', async () => {
    const r = make({ maxFetchFailures: 2 });
    const sha = reveal(r, 'A', 'flaky', 10);
    r.fetchFails.set(sha, new FetchError('HTTP 503', true));
    const s1 = await r.v.pass();
    assert.equal(s1.pending, 1);
    let row = r.store.recent(1)[0];
    assert.deepEqual([row.state, row.fetch_failures, row.attempts], ['pending', 1, 0]);
    assert.ok(row.retry_at && row.retry_at > new Date().toISOString(), 'waits before the next try');
    await r.v.pass();
    assert.equal(r.store.recent(1)[0].fetch_failures, 1, 'not retried before its time');
    r.store.db.prepare('UPDATE submissions SET retry_at = NULL').run();
    await r.v.pass();
    row = r.store.recent(1)[0];
    assert.deepEqual([row.state, row.reject_code], ['rejected', 'fetch']);

    const sha2 = reveal(r, 'B', 'tampered', 30);
    r.fetchFails.set(sha2, new FetchError('the code\'s sha256 is 00…, committed …', false));
    await r.v.pass();
    assert.deepEqual([r.store.recent(1)[0].state, r.store.recent(1)[0].reject_code], ['rejected', 'fetch']);
    assert.equal(r.evaluated.length, 0);
  });

  it('a harness error requeues the submission (its fault or not), and gives up after max attempts', async () => {
    const r = make({ maxAttempts: 2 });
    reveal(r, 'A', 'boom', 10);
    r.verdicts.set('boom', new Error('the official baseline failed its run on this machine'));
    await r.v.pass();
    assert.deepEqual([r.store.recent(1)[0].state, r.store.recent(1)[0].attempts], ['pending', 1]);
    r.store.db.prepare('UPDATE submissions SET retry_at = NULL').run();
    await r.v.pass();
    const row = r.store.recent(1)[0];
    assert.deepEqual([row.state, row.reject_code], ['rejected', 'evaluation_error']);
    assert.match(row.reasons!, /failed 2 times/);
  });

  it('chain outages are retried with backoff, not fatal; weights that fail are retried later', async () => {
    const r = make();
    reveal(r, 'A', 'a', 10);
    r.chain.failTimes.set('revealed', 2);
    const s = await r.v.run({ once: true });
    assert.equal(s?.accepted, 1, 'the third try of the pass went through');

    const r2 = make();
    r2.chain.failing.add('setWeights');
    await r2.v.pass();
    assert.equal(r2.store.lastWeightsAttempt()?.status, 'failed');
    assert.match(r2.store.lastWeightsAttempt()!.error!, /fake outage/);
    r2.chain.failing.clear();
    await r2.v.pass();
    assert.equal(r2.chain.weightCalls.length, 0, 'waits a tenth of the interval after a failure');
    r2.chain.block += HP.set_weights_interval_blocks / 10;
    await r2.v.pass();
    assert.equal(r2.chain.weightCalls.length, 1);
    assert.equal(r2.store.lastSentWeights()?.block, r2.chain.block);
  });

  it('--once gives up after repeated outages with the chain\'s error', async () => {
    const r = make();
    r.chain.failing.add('currentBlock');
    await assert.rejects(r.v.run({ once: true }), /fake outage/);
  });

  it('recovery: an interrupted evaluation starts over; one interrupted max-attempts times is rejected', async () => {
    const r = make({ maxAttempts: 2 });
    reveal(r, 'A', 'a', 10);
    reveal(r, 'B', 'b', 20);
    await r.v.discover(await r.chain.neurons());
    const [a, b] = r.store.due();
    r.store.startEvaluation(a.id);
    r.store.startEvaluation(b.id);
    r.store.db.prepare('UPDATE submissions SET attempts = 2 WHERE id = ?').run(b.id);
    r.store.beginWeights({ block: 1, leaderSubmissionId: null, reason: 'x', uids: [0], weights: [65535] });
    r.v.recover();
    assert.deepEqual(stateOf(r), [['A', 'pending', null], ['B', 'rejected', 'interrupted']]);
    assert.equal(r.store.lastWeightsAttempt()?.status, 'unknown');
    await r.v.pass();
    assert.deepEqual(r.evaluated, ['a']);
  });

  it('refuses a database made for another network or subnet', () => {
    const r = make();
    assert.throws(() => ValidatorStore.open(r.dir, { network: 'finney', netuid: 3 }), /belongs to network fake, subnet 3/);
  });
});
