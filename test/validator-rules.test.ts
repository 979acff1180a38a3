// The validator's pure rules: commitment checks against hostile input, the
// leader fold and its threshold, and the weights as the SDK would send them.
import { strict as assert } from 'assert';
import { encodePayload, type CommitmentPayload } from '../src/chain/payload';
import { decodeWeightsPayload, encodeWeightsPayload, normalizeWeightsU16, weightsRevealRound } from '../src/chain/weights';
import type { LeaderThreshold } from '../src/config/hparams';
import { codeKey } from '../src/storage/store';
import { checkCommitment } from '../src/validator/commitments';
import { r2Endpoint } from '../src/storage/r2';
import { currentLeader, leadershipHistory, scoreToBeat, thresholdAt } from '../src/validator/scoring';
import { planWeights } from '../src/validator/weights';

const SHA = 'ab'.repeat(32);
const KEY = codeKey(SHA);
const rules = { local: false, maxCodeBytes: 262144 };
const r2 = (over: Record<string, unknown> = {}) => ({
  kind: 'r2',
  account_id: '0123456789abcdef0123456789abcdef',
  bucket: 'my-bucket',
  key: KEY,
  access_key_id: 'f'.repeat(32),
  secret_access_key: 'e'.repeat(64),
  ...over,
});
const payload = (loc: Record<string, unknown>, over: Record<string, unknown> = {}) =>
  encodePayload({ v: 1, sha256: SHA, size: 1000, loc, ...over } as unknown as CommitmentPayload);
const reason = (bytes: Uint8Array, r = rules) => {
  const c = checkCommitment(bytes, r);
  return c.ok ? null : c.reason;
};

describe('validator: commitment checks (hostile input)', () => {
  it('accepts a well-formed r2, url and (locally) local commitment', () => {
    assert.equal(reason(payload(r2())), null);
    assert.equal(reason(payload(r2({ jurisdiction: 'eu' }))), null);
    assert.equal(reason(payload({ kind: 'url', url: `https://pub-123.r2.dev/${KEY}` })), null);
    assert.equal(reason(payload({ kind: 'local', key: KEY }), { ...rules, local: true }), null);
  });

  it('refuses an account id that would steer the endpoint (127.0.0.1:PORT/x?)', () => {
    assert.match(reason(payload(r2({ account_id: '127.0.0.1:8080/x?' })))!, /account_id/);
    assert.match(reason(payload(r2({ account_id: 'evil.com#' })))!, /account_id/);
  });

  it('refuses bad buckets, keys, tokens and jurisdictions', () => {
    assert.match(reason(payload(r2({ bucket: 'a/../b' })))!, /bucket/);
    assert.match(reason(payload(r2({ bucket: 'UPPER' })))!, /bucket/);
    assert.match(reason(payload(r2({ key: '../../etc/passwd' })))!, /content address/);
    assert.match(reason(payload(r2({ key: codeKey('cd'.repeat(32)) })))!, /content address/);
    assert.match(reason(payload(r2({ access_key_id: undefined, secret_access_key: undefined })))!, /read-only token/);
    assert.match(reason(payload(r2({ access_key_id: 'x\r\nHost: evil' })))!, /access_key_id/);
    assert.match(reason(payload(r2({ secret_access_key: 'short' })))!, /secret_access_key/);
    // A hostile jurisdiction is refused, or (when the payload decoder drops the field) never reaches the endpoint.
    const j = checkCommitment(payload(r2({ jurisdiction: 'evil.example.com/' })), rules);
    if (j.ok) {
      const loc = j.payload.loc as { account_id: string; jurisdiction?: 'eu' };
      assert.equal(r2Endpoint(loc.account_id, loc.jurisdiction), 'https://0123456789abcdef0123456789abcdef.r2.cloudflarestorage.com');
    } else assert.match(j.reason, /jurisdiction/);
  });

  it('refuses URLs that are not plain https to the content address', () => {
    const url = (u: string) => reason(payload({ kind: 'url', url: u }));
    assert.match(url(`http://example.com/${KEY}`)!, /https/);
    assert.match(url(`https://user:pw@example.com/${KEY}`)!, /credentials/);
    assert.match(url(`https://example.com:8443/${KEY}`)!, /default port/);
    assert.match(url(`https://example.com/${KEY}?x=1`)!, /query/);
    assert.match(url('https://example.com/other.cpp')!, /content address/);
    assert.match(url('not a url')!, /not a URL/);
    assert.match(url(`https://example.com/${'a'.repeat(600)}/${KEY}`)!, /longer/);
    // On the local network, plain http to a local port is how the demo serves code.
    assert.equal(reason(payload({ kind: 'url', url: `http://127.0.0.1:8080/${KEY}` }), { ...rules, local: true }), null);
  });

  it('refuses local storage off the local network, wrong sizes, garbage and oversized bytes', () => {
    assert.match(reason(payload({ kind: 'local', key: KEY }))!, /only valid on the local network/);
    assert.match(reason(payload(r2(), { size: 0 }))!, /size/);
    assert.match(reason(payload(r2(), { size: 262145 }))!, /size/);
    assert.match(reason(payload(r2(), { sha256: 'AB'.repeat(32) }))!, /sha256/);
    assert.match(reason(payload(r2(), { v: 2 }))!, /version/);
    assert.match(reason(Buffer.from('\x00\x01\x02'))!, /not a tournament commitment/);
    assert.match(reason(new Uint8Array(0))!, /empty/);
    assert.match(reason(new Uint8Array(2000).fill(0x41))!, /over the chain's 1024/);
    assert.match(reason(Buffer.from('{"v":1,'))!, /not JSON/);
  });
});

const P: LeaderThreshold = { base: 0.01, decay_percent: 0.05, decay_interval_blocks: 100, max: 0.5 };

describe('validator: leader and threshold', () => {
  it('the first accepted leads; a later one must beat it by more than the threshold; ties stay with the earlier', () => {
    const l = currentLeader([{ id: 1, block: 10, score: 100 }, { id: 2, block: 20, score: 100 }, { id: 3, block: 30, score: 100.9 }], P);
    assert.equal(l!.leader.id, 1);
    const l2 = currentLeader([{ id: 1, block: 10, score: 100 }, { id: 3, block: 30, score: 101.5 }], P);
    assert.equal(l2!.leader.id, 3);
  });

  it('commitment order decides, not the order verdicts arrive in', () => {
    const a = { id: 7, block: 50, score: 100 };
    const b = { id: 3, block: 60, score: 100 };
    assert.equal(currentLeader([b, a], P)!.leader.id, 7);
    assert.equal(currentLeader([a, b], P)!.leader.id, 7);
  });

  it('a big jump sets a high bar (capped at max) that decays towards base', () => {
    const h = leadershipHistory([{ id: 1, block: 0, score: 100 }, { id: 2, block: 100, score: 130 }], P);
    const lead = h[h.length - 1].leadership;
    assert.equal(lead.leader.id, 2);
    assert.ok(Math.abs(lead.initialThreshold - 0.3) < 1e-12);
    assert.ok(Math.abs(thresholdAt(lead, 100, P) - 0.3) < 1e-12);
    // one decay interval later 5% of the excess over base is gone
    assert.ok(Math.abs(thresholdAt(lead, 200, P) - (0.01 + 0.29 * 0.95)) < 1e-12);
    assert.ok(thresholdAt(lead, 100000, P) < 0.0101);
    // 140 does not beat 130 * 1.3 right away, but does once the bar has decayed
    assert.equal(currentLeader([{ id: 1, block: 0, score: 100 }, { id: 2, block: 100, score: 130 }, { id: 3, block: 110, score: 140 }], P)!.leader.id, 2);
    assert.equal(currentLeader([{ id: 1, block: 0, score: 100 }, { id: 2, block: 100, score: 130 }, { id: 3, block: 5000, score: 140 }], P)!.leader.id, 3);
    const capped = leadershipHistory([{ id: 1, block: 0, score: 1 }, { id: 2, block: 1, score: 10 }], P);
    assert.equal(capped[capped.length - 1].leadership.initialThreshold, 0.5);
    assert.ok(Math.abs(scoreToBeat(capped[1].leadership, 1, P)! - 15) < 1e-9);
    assert.equal(scoreToBeat(null, 1, P), null);
  });
});

describe('validator: weights', () => {
  it('normalises like the SDK: float32, max-upscaled to 65535, rounded half to even, zeros dropped', () => {
    assert.deepEqual(normalizeWeightsU16([5, 1], [0.05, 0.95]), { uids: [5, 1], weights: [3449, 65535] });
    assert.deepEqual(normalizeWeightsU16([1], [1]), { uids: [1], weights: [65535] });
    assert.deepEqual(normalizeWeightsU16([1, 2], [0, 0]), { uids: [], weights: [] });
    assert.deepEqual(normalizeWeightsU16([1, 2], [1e-9, 1]), { uids: [2], weights: [65535] });
    // 0.5 * 65535 = 32767.5: Python's round gives the even 32768
    assert.deepEqual(normalizeWeightsU16([1, 2], [0.5, 1]), { uids: [1, 2], weights: [32768, 65535] });
    assert.throws(() => normalizeWeightsU16([1], [-1]), /non-negative/);
    assert.throws(() => normalizeWeightsU16([70000], [1]), /u16/);
  });

  it('leader gets 1 - burn_rate, burn_uid burn_rate; all to burn_uid without a registered leader', () => {
    const neurons = [{ uid: 4, hotkey: 'A' }, { uid: 1, hotkey: 'B' }];
    const p = planWeights({ submissionId: 9, hotkey: 'A' }, neurons, 0.95, 1);
    assert.deepEqual([p.uids, p.weights, p.leaderSubmissionId], [[1, 4], [65535, 3449], 9]);
    const none = planWeights(null, neurons, 0.95, 1);
    assert.deepEqual([none.uids, none.weights, none.leaderSubmissionId], [[1], [65535], null]);
    const gone = planWeights({ submissionId: 9, hotkey: 'Z' }, neurons, 0.95, 1);
    assert.deepEqual([gone.uids, gone.weights], [[1], [65535]]);
    assert.match(gone.reason, /not registered/);
    // the leader is burn_uid itself: one entry
    const same = planWeights({ submissionId: 9, hotkey: 'B' }, neurons, 0.95, 1);
    assert.deepEqual([same.uids, same.weights], [[1], [65535]]);
  });

  it('encodes WeightsTlockPayload as SCALE (hotkey, uids, values, version_key)', () => {
    const hk = new Uint8Array(32).fill(7);
    const b = encodeWeightsPayload(hk, [1, 4], [65535, 3449], 1234n);
    // compact(32) + 32 bytes, compact(2) + 2 u16, compact(2) + 2 u16, u64
    assert.equal(b.length, 1 + 32 + 1 + 4 + 1 + 4 + 8);
    assert.deepEqual(Array.from(b.subarray(0, 2)), [32 << 2, 7]);
    assert.deepEqual(Array.from(b.subarray(33, 38)), [2 << 2, 1, 0, 4, 0]);
    assert.deepEqual(Array.from(b.subarray(b.length - 8)), [0xd2, 0x04, 0, 0, 0, 0, 0, 0]);
    const d = decodeWeightsPayload(b);
    assert.deepEqual([Array.from(d.hotkey), d.uids, d.values, d.versionKey], [Array.from(hk), [1, 4], [65535, 3449], 1234n]);
  });

  it('aims the commit at the reveal epoch as bittensor-drand does', () => {
    // tempo 360, netuid 3: epochs are 361 blocks, shifted by 4. Block 1000 is in epoch 2, reveal epoch 3
    // starts at block 3 * 361 - 4 = 1079; the SDK aims 3 blocks later: 82 blocks of 12 s from now.
    const genesis = 1692803367;
    const nowMs = (genesis + 3 * 1000000) * 1000;
    const r = weightsRevealRound({ currentBlock: 1000, netuid: 3, tempo: 360, revealPeriodEpochs: 1, blockTime: 12, nowMs });
    assert.equal(r, BigInt(1000000 + Math.floor((82 * 12) / 3)));
  });
});
