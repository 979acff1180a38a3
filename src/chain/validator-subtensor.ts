// The validator's reads and writes on subtensor:
//   SubtensorModule.SubnetworkN(netuid), Keys(netuid, uid)          registered hotkeys by uid
//   Commitments.RevealedCommitments(netuid, hotkey)                 revealed plaintexts (last 10)
//   SubtensorModule.CommitRevealWeightsEnabled, WeightsVersionKey,
//     Tempo, RevealPeriodEpochs (netuid), CommitRevealWeightsVersion, WeightsSetRateLimit
//   SubtensorModule.set_weights / commit_timelocked_weights          (payloads: weights.ts)
// Revealed commitments are read only for registered hotkeys: a deregistered
// hotkey's commitments are never seen, let alone evaluated.
import type { ApiPromise } from '@polkadot/api';
import type { Codec } from '@polkadot/types/types';
import type { ProviderInterface } from '@polkadot/rpc-provider/types';
import { u8aToHex } from '@polkadot/util';
import { UserError } from '../errors';
import { parseRevealedCommitments } from './codec';
import { signAndWatch, SubtensorChain, withTimeout } from './subtensor';
import { QUICKNET, timelockEncrypt } from './timelock';
import type { Neuron, RevealedCommitment, ValidatorChain, WeightsReceipt, WeightsRequest, WeightsSettings } from './validator-chain';
import { encodeWeightsPayload, weightsRevealRound } from './weights';

const QUERY_TIMEOUT_MS = 60000;
const ZERO_ACCOUNT = '0x' + '00'.repeat(32);

const num = (c: Codec) => Number(c.toString());

export class SubtensorValidatorChain implements ValidatorChain {
  readonly kind = 'subtensor' as const;
  private readonly api: ApiPromise;

  private constructor(private readonly base: SubtensorChain) {
    this.api = base.api;
  }

  get name(): string {
    return this.base.name;
  }

  static async connect(name: string, url: string, blockTime: number): Promise<SubtensorValidatorChain> {
    return new SubtensorValidatorChain(await SubtensorChain.connect(name, url, blockTime));
  }

  /** Over an already connected provider (tests use an in-process node). */
  static async over(name: string, provider: ProviderInterface, blockTime: number): Promise<SubtensorValidatorChain> {
    return new SubtensorValidatorChain(await SubtensorChain.over(name, provider, { blockTime }));
  }

  private query<T>(p: Promise<T>, what: string): Promise<T> {
    return withTimeout(p, QUERY_TIMEOUT_MS, `reading ${what} from ${this.name}`);
  }

  currentBlock(): Promise<number> {
    return this.query(this.base.currentBlock(), 'the current block');
  }

  async neurons(netuid: number): Promise<Neuron[]> {
    const sm = this.api.query.subtensorModule;
    const n = num(await this.query(sm.subnetworkN(netuid), 'the subnet size'));
    if (n === 0) return [];
    const keys = await this.query(sm.keys.multi(Array.from({ length: n }, (_, uid) => [netuid, uid])), 'the registered hotkeys');
    const out: Neuron[] = [];
    keys.forEach((k, uid) => {
      if (u8aToHex(k.toU8a()) !== ZERO_ACCOUNT) out.push({ uid, hotkey: k.toString() });
    });
    return out;
  }

  async revealed(netuid: number, hotkeys: string[]): Promise<RevealedCommitment[]> {
    if (hotkeys.length === 0) return [];
    const values = await this.query(
      this.api.query.commitments.revealedCommitments.multi(hotkeys.map((h) => [netuid, h])),
      'revealed commitments',
    );
    return values.flatMap((v, i) => parseRevealedCommitments(v).map((r) => ({ hotkey: hotkeys[i], block: r.block, bytes: r.bytes })));
  }

  async weightsSettings(netuid: number): Promise<WeightsSettings> {
    const sm = this.api.query.subtensorModule;
    const [enabled, versionKey, tempo, period, crVersion, rateLimit] = await this.query(
      Promise.all([
        sm.commitRevealWeightsEnabled(netuid),
        sm.weightsVersionKey(netuid),
        sm.tempo(netuid),
        sm.revealPeriodEpochs(netuid),
        sm.commitRevealWeightsVersion(),
        sm.weightsSetRateLimit(netuid),
      ]),
      'the subnet\'s weight settings',
    );
    return {
      commitReveal: enabled.toString() === 'true',
      versionKey: BigInt(versionKey.toString()),
      tempo: num(tempo),
      revealPeriodEpochs: num(period),
      commitRevealVersion: num(crVersion),
      rateLimit: num(rateLimit),
    };
  }

  async setWeights(req: WeightsRequest): Promise<WeightsReceipt> {
    const hotkey = req.hotkey;
    if (!hotkey) throw new UserError('setting weights on subtensor needs the validator\'s hotkey');
    const s = await this.weightsSettings(req.netuid);
    const sm = this.api.tx.subtensorModule;
    if (!s.commitReveal) {
      const tx = sm.setWeights(req.netuid, req.uids, req.weights, s.versionKey);
      const r = await signAndWatch(this.api, tx, hotkey.pair, 'weights');
      return { mode: 'set_weights', block: r.block, txHash: r.txHash, revealRound: null, versionKey: s.versionKey };
    }
    const currentBlock = await this.currentBlock();
    const round = weightsRevealRound({
      currentBlock,
      netuid: req.netuid,
      tempo: s.tempo,
      revealPeriodEpochs: s.revealPeriodEpochs,
      blockTime: this.base.blockTime,
      nowMs: Date.now(),
    });
    const plaintext = encodeWeightsPayload(hotkey.pair.publicKey, req.uids, req.weights, s.versionKey);
    const commit = timelockEncrypt(plaintext, round, QUICKNET.publicKey);
    if (!sm.commitTimelockedWeights) throw new UserError(`${this.name} has no SubtensorModule.commit_timelocked_weights`);
    const tx = sm.commitTimelockedWeights(req.netuid, u8aToHex(commit), round, s.commitRevealVersion);
    const r = await signAndWatch(this.api, tx, hotkey.pair, 'weights commit');
    return { mode: 'commit_timelocked_weights', block: r.block, txHash: r.txHash, revealRound: round, versionKey: s.versionKey };
  }

  close(): Promise<void> {
    return this.base.close();
  }
}
