// The subtensor client against an in-process node serving the real finney metadata:
// registration, rate-limit and commitment storage reads, and the signed
// Commitments.set_commitment extrinsic exactly as it would reach the chain.
import { strict as assert } from 'assert';
import * as path from 'path';
import { compactAddLength } from '@polkadot/util';
import { SubtensorChain } from '../src/chain/subtensor';
import { timelockCommitmentInfo } from '../src/chain/codec';
import { encodePayload, decodePayload, CommitmentPayload } from '../src/chain/payload';
import { timelockDecrypt, revealRound, roundTime, TimelockError } from '../src/chain/timelock';
import { TLE_OVERHEAD_BYTES } from '../src/chain/limits';
import { loadHotkey, Hotkey } from '../src/wallet/wallet';
import { sendCommit, prepareCommit } from '../src/miner/publish';
import type { MinerContext as Context } from '../src/miner/context';
import { LocalStore, uploadCode } from '../src/storage/store';
import { loadHparams } from '../src/config/hparams';
import { UserError } from '../src/errors';
import { finneyMetadata, loadQuicknet } from './helpers/chain-fixtures';
import { tmpDir, removeTmpDir } from './helpers/tmp';
import { PROJECT_ROOT } from '../src/util/paths';
import { FakeSubtensor } from './helpers/chain-fake-node';
import { writeHotkey } from './helpers/miner-wallet';

describe('subtensor client (in-process node, real finney metadata)', function () {
  this.timeout(60000);
  let metadataHex: string;
  let metadataV15Hex: string;
  let sig1000: string;
  let node: FakeSubtensor;
  let chain: SubtensorChain;
  let hotkey: Hotkey;
  let dir: string;
  const payload: CommitmentPayload = { v: 1, sha256: 'd'.repeat(64), size: 1234, loc: { kind: 'url', url: 'https://pub.example.dev/tournament/train/x.cpp' } };

  before(async function () {
    ({ v14: metadataHex, v15: metadataV15Hex } = finneyMetadata());
    sig1000 = loadQuicknet().rounds[0].signature;
    dir = tmpDir('subtensor-client');
    const hk = await writeHotkey(dir);
    hotkey = await loadHotkey({ name: hk.name, hotkey: hk.hotkey, path: dir });
  });
  after(() => dir && removeTmpDir(dir));

  beforeEach(async function () {
    node = new FakeSubtensor(metadataHex, metadataV15Hex);
    chain = await SubtensorChain.over('fake', node, { blockTime: 12 });
  });
  afterEach(async () => chain?.close());

  const u16 = (n: number) => new Uint8Array([n & 0xff, n >> 8]);
  const u32 = (n: number) => Buffer.from(new Uint32Array([n]).buffer);

  it('reads the block height, registration and last commitment block', async function () {
    assert.equal(await chain.currentBlock(), 1000);
    assert.equal(await chain.uidOf(3, hotkey.address), null);
    node.set(node.d.query.subtensorModule.uids as never, [3, hotkey.address], u16(17));
    assert.equal(await chain.uidOf(3, hotkey.address), 17);
    assert.equal(await chain.uidOf(4, hotkey.address), null);
    assert.equal(await chain.lastCommitBlock(3, hotkey.address), null);
    node.set(node.d.query.commitments.lastCommitment as never, [3, hotkey.address], u32(950));
    assert.equal(await chain.lastCommitBlock(3, hotkey.address), 950);
    assert.deepEqual(node.unknown, []);
  });

  it('sends Commitments.set_commitment signed by the hotkey, timelocked to the right round', async function () {
    const plaintext = encodePayload(payload);
    const t0 = Date.now();
    const receipt = await chain.submitCommitment({ netuid: 3, hotkey, plaintext, revealBlocks: 100 });
    assert.equal(receipt.block, 1001);
    assert.equal(receipt.revealBlock, 1101);
    assert.equal(receipt.bytes, plaintext.length + TLE_OVERHEAD_BYTES);
    assert.equal(node.submitted.length, 1);

    const xt = node.registry.createType('Extrinsic', node.submitted[0]);
    assert.ok(xt.isSigned);
    assert.equal(xt.signer.toString(), hotkey.address);
    assert.equal(xt.method.section, 'commitments');
    assert.equal(xt.method.method, 'setCommitment');
    const args = xt.method.toJSON() as unknown as { args: { netuid: number; info: { fields: { timelockEncrypted: { encrypted: string; revealRound: number } }[] } } };
    assert.equal(args.args.netuid, 3);
    const field = args.args.info.fields[0].timelockEncrypted;
    const round = BigInt(field.revealRound);
    assert.equal(round, receipt.revealRound);
    // The client reads the clock itself, somewhere between t0 and now: the round
    // is the one 100 blocks of 12 s after some moment of that interval.
    const lo = revealRound(1200, t0);
    const hi = revealRound(1200, Date.now());
    assert.ok(round >= lo && round <= hi, `reveal round ${round} is not that of 1200 s after the call (${lo} to ${hi})`);
    // the ciphertext is well formed and locked: another round's signature does not open it
    const ct = Buffer.from(field.encrypted.slice(2), 'hex');
    assert.throws(() => timelockDecrypt(ct, sig1000), (e: unknown) => e instanceof TimelockError && /does not match/.test((e as Error).message));
  });

  it('reports a refused extrinsic with the pallet error', async function () {
    node.failWith = ['Commitments', 'SpaceLimitExceeded'];
    await assert.rejects(
      chain.submitCommitment({ netuid: 3, hotkey, plaintext: encodePayload(payload), revealBlocks: 100 }),
      (e: unknown) => e instanceof UserError && /rejected the commitment: commitments\.SpaceLimitExceeded: Space Limit Exceeded/.test((e as Error).message),
    );
  });

  it('status: the pending round from CommitmentOf and the revealed payloads', async function () {
    const ciphertext = new Uint8Array(400).fill(1);
    const regType = node.registry.createLookupType((node.d.query.commitments.commitmentOf as unknown as { meta: { type: { asMap: { value: { toNumber(): number } } } } }).meta.type.asMap.value.toNumber());
    const futureRound = revealRound(3600, Date.now());
    const t0 = Date.now() / 1000;
    node.set(node.d.query.commitments.commitmentOf as never, [3, hotkey.address], node.registry.createType(regType, { deposit: 0, block: 990, info: timelockCommitmentInfo(ciphertext, futureRound) }).toU8a());
    const revealed = node.registry.createType('Vec<(Bytes,u64)>', [[compactAddLength(encodePayload(payload)), 900]]).toU8a();
    node.set(node.d.query.commitments.revealedCommitments as never, [3, hotkey.address], revealed);
    const st = await chain.status(3, hotkey.address);
    const t1 = Date.now() / 1000;
    assert.equal(st.currentBlock, 1000);
    assert.equal(st.pending.length, 1);
    assert.equal(st.pending[0].block, 990);
    assert.equal(st.pending[0].revealRound, futureRound);
    // about 300 blocks of 12 s ahead, counted from when status() read the clock (between t0 and t1)
    const revealAt = roundTime(futureRound);
    const [earliest, latest] = [1000 + Math.ceil((revealAt - t1) / 12), 1000 + Math.ceil((revealAt - t0) / 12)];
    assert.ok(st.pending[0].revealBlock >= earliest && st.pending[0].revealBlock <= latest, `reveal block ${st.pending[0].revealBlock}, expected ${earliest} to ${latest}`);
    assert.equal(st.revealed.length, 1);
    assert.equal(st.revealed[0].block, 900);
    assert.deepEqual(decodePayload(st.revealed[0].bytes), payload);
  });

  it('the commit step refuses an unregistered hotkey and a rate-limited one, sending nothing', async function () {
    const hp = loadHparams(path.join(PROJECT_ROOT, 'hparams', 'hparams.json'));
    const ctx: Context = { hp, network: { kind: 'subtensor', name: 'fake', url: 'ws://fake' }, netuid: 3 };
    const store = new LocalStore(path.join(dir, 'store'));
    const code = new TextEncoder().encode('#include <tournament/train_api.h>\n');
    await uploadCode(store, code);
    const source = { path: 'train.cpp', bytes: code, text: '', sha256: require('crypto').createHash('sha256').update(code).digest('hex') };
    const prepared = await prepareCommit({ store, location: (key) => ({ kind: 'url', url: `https://pub.example.dev/${key}` }), close: () => undefined }, source);
    await assert.rejects(sendCommit(ctx, chain, hotkey, prepared), /is not registered on subnet 3 of fake/);
    node.set(node.d.query.subtensorModule.uids as never, [3, hotkey.address], u16(2));
    node.set(node.d.query.commitments.lastCommitment as never, [3, hotkey.address], u32(950));
    await assert.rejects(sendCommit(ctx, chain, hotkey, prepared), /rate limit: the last commitment was at block 950, now 1000; the next is allowed at block 1050/);
    assert.equal(node.submitted.length, 0);
    node.set(node.d.query.commitments.lastCommitment as never, [3, hotkey.address], u32(900));
    const o = await sendCommit(ctx, chain, hotkey, prepared);
    assert.equal(o.uid, 2);
    assert.equal(o.receipt.revealBlock, o.receipt.block + hp.reveal_blocks);
    assert.equal(node.submitted.length, 1);
  });
});
