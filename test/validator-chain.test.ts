// The validator's side of subtensor against an in-process node serving the real
// finney metadata: registered hotkeys by uid, revealed commitments, the weight
// settings, and set_weights / commit_timelocked_weights exactly as they reach
// the chain. Also the local network's view.
import { strict as assert } from 'assert';
import { HPARAMS_FILE } from '../src/util/paths';
import * as fs from 'fs';
import * as path from 'path';
import { compactAddLength, u8aConcat } from '@polkadot/util';
import { encodePayload, type CommitmentPayload } from '../src/chain/payload';
import { timelockDecrypt, timelockEncrypt, QUICKNET } from '../src/chain/timelock';
import { SubtensorValidatorChain } from '../src/chain/validator-subtensor';
import { decodeWeightsPayload, encodeWeightsPayload, weightsRevealRound } from '../src/chain/weights';
import { loadHotkey, type Hotkey } from '../src/wallet/wallet';
import { FakeSubtensor } from './helpers/chain-fake-node';
import { finneyMetadata, loadQuicknet } from './helpers/chain-fixtures';
import { writeHotkey } from './helpers/miner-wallet';
import { runCli } from './helpers/miner-cli';
import { removeTmpDir, tmpDir } from './helpers/tmp';

describe('validator: subtensor reads and weights (in-process node, real finney metadata)', function () {
  this.timeout(60000);
  let metadataHex: string;
  let metadataV15Hex: string;
  let dir: string;
  let hotkey: Hotkey;
  let other: Hotkey;
  let node: FakeSubtensor;
  let chain: SubtensorValidatorChain;

  before(async function () {
    ({ v14: metadataHex, v15: metadataV15Hex } = finneyMetadata());
    dir = tmpDir('validator-chain');
    const a = await writeHotkey(dir, 'validator', 'hk');
    const b = await writeHotkey(dir, 'miner', 'hk');
    hotkey = await loadHotkey({ name: a.name, hotkey: a.hotkey, path: dir });
    other = await loadHotkey({ name: b.name, hotkey: b.hotkey, path: dir });
  });
  after(() => dir && removeTmpDir(dir));

  beforeEach(async () => {
    node = new FakeSubtensor(metadataHex, metadataV15Hex);
    chain = await SubtensorValidatorChain.over('fake', node, 12);
  });
  afterEach(async () => chain?.close());

  const q = () => node.d.query.subtensorModule as unknown as Record<string, never>;
  /** n as `bytes` little-endian bytes (u16, u64) */
  const le = (n: number | bigint, bytes: number) => {
    const b = new Uint8Array(8);
    new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
    return b.subarray(0, bytes);
  };

  it('lists registered hotkeys by uid and reads their revealed commitments only', async () => {
    node.set(q().subnetworkN, [3], le(3, 2));
    node.set(q().keys, [3, 0], other.pair.publicKey);
    node.set(q().keys, [3, 2], hotkey.pair.publicKey); // uid 1 is an empty slot (zero account)
    assert.deepEqual(await chain.neurons(3), [{ uid: 0, hotkey: other.address }, { uid: 2, hotkey: hotkey.address }]);
    assert.deepEqual(await chain.neurons(4), []);

    const p: CommitmentPayload = { v: 1, sha256: 'a'.repeat(64), size: 10, loc: { kind: 'url', url: 'https://x.dev/k' } };
    const bytes = encodePayload(p);
    // Vec<(Bytes, u64)> with one entry
    node.set(node.d.query.commitments.revealedCommitments as never, [3, other.address], u8aConcat([1 << 2], compactAddLength(bytes), le(1234, 8)));
    const got = await chain.revealed(3, [other.address, hotkey.address]);
    assert.equal(got.length, 1);
    assert.deepEqual([got[0].hotkey, got[0].block, Buffer.from(got[0].bytes).toString('hex')], [other.address, 1234, Buffer.from(bytes).toString('hex')]);
    assert.deepEqual(node.unknown, []);
  });

  it('sets weights with set_weights when commit-reveal is off, at the subnet\'s version key', async () => {
    node.set(q().commitRevealWeightsEnabled, [3], new Uint8Array([0]));
    node.set(q().weightsVersionKey, [3], le(77, 8));
    const r = await chain.setWeights({ netuid: 3, hotkey, uids: [0, 5], weights: [65535, 3449] });
    assert.equal(r.mode, 'set_weights');
    assert.equal(r.versionKey, 77n);
    const xt = node.registry.createType('Extrinsic', node.submitted[0]);
    assert.equal(xt.signer.toString(), hotkey.address);
    assert.deepEqual([xt.method.section, xt.method.method], ['subtensorModule', 'setWeights']);
    const a = (xt.method.toJSON() as { args: Record<string, unknown> }).args;
    assert.deepEqual([a.netuid, a.dests, a.weights, a.version_key ?? a.versionKey], [3, [0, 5], [65535, 3449], 77]);
  });

  it('commits timelocked weights when commit-reveal is on (the default), as the SDK builds them', async () => {
    node.set(q().weightsVersionKey, [3], le(5, 8));
    node.set(q().tempo, [3], le(99, 2));
    node.set(q().revealPeriodEpochs, [3], le(2, 8));
    const before = weightsRevealRound({ currentBlock: 1000, netuid: 3, tempo: 99, revealPeriodEpochs: 2, blockTime: 12, nowMs: Date.now() });
    const r = await chain.setWeights({ netuid: 3, hotkey, uids: [1, 4], weights: [65535, 3449] });
    const after = weightsRevealRound({ currentBlock: 1000, netuid: 3, tempo: 99, revealPeriodEpochs: 2, blockTime: 12, nowMs: Date.now() });
    assert.equal(r.mode, 'commit_timelocked_weights');
    const xt = node.registry.createType('Extrinsic', node.submitted[0]);
    assert.deepEqual([xt.method.section, xt.method.method], ['subtensorModule', 'commitTimelockedWeights']);
    const a = (xt.method.toJSON() as { args: Record<string, string | number> }).args;
    const round = BigInt(a.reveal_round ?? a.revealRound);
    assert.ok(round >= before && round <= after, `reveal round ${round} in [${before}, ${after}]`);
    assert.equal(round, r.revealRound);
    assert.equal(a.commit_reveal_version ?? a.commitRevealVersion, 4, 'CommitRevealWeightsVersion\'s default');
    // The commit is a tle ciphertext of exactly the SCALE payload (96-byte G2 header first).
    const commit = Buffer.from(String(a.commit).slice(2), 'hex');
    const payloadLen = encodeWeightsPayload(hotkey.pair.publicKey, [1, 4], [65535, 3449], 5n).length;
    assert.equal(commit.length, payloadLen + 96 + 2 * 40 + 8 + 24 + 20 + 16);
  });

  it('a weights payload locked to a real beacon round opens to what was sent', function () {
    const fixture = loadQuicknet();
    const { round, signature } = fixture.rounds[0];
    const plain = encodeWeightsPayload(hotkey.pair.publicKey, [1, 4], [65535, 3449], 9n);
    const opened = decodeWeightsPayload(timelockDecrypt(timelockEncrypt(plain, round, QUICKNET.publicKey), signature));
    assert.deepEqual([Buffer.from(opened.hotkey).equals(Buffer.from(hotkey.pair.publicKey)), opened.uids, opened.values, opened.versionKey], [true, [1, 4], [65535, 3449], 9n]);
  });

  it('evaluate says clearly when the chain cannot be reached (no stack trace)', async function () {
    fs.mkdirSync(path.join(dir, 'benchmark', 'model'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'benchmark', 'data'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'benchmark', 'model', 'config.json'), '{}');
    fs.writeFileSync(path.join(dir, 'benchmark', 'data', 'train.pt'), '');
    const r = await runCli(
      ['evaluate', '--network', 'ws://127.0.0.1:9', '--wallet.path', dir, '--wallet.name', 'validator', '--wallet.hotkey', 'hk', '--benchmark-dir', path.join(dir, 'benchmark'), '--data-dir', path.join(dir, 'vd'), '--once', '--hparams', HPARAMS_FILE],
      { cwd: dir },
    );
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /^error: cannot reach ws:\/\/127\.0\.0\.1:9/m);
    assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, 'no stack trace');
  });
});
