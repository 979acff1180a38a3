// The validator's view of the file-backed local network (--network local):
// every hotkey with a file under .local_commitments/<netuid>/ is registered
// with the uid recorded there, and its commitments whose reveal block has
// passed are revealed (the format is described in local.ts). Weights are not
// sent anywhere: the validator records them in its database.
import * as fs from 'fs';
import * as path from 'path';
import { hexToU8a, isHex } from '@polkadot/util';
import type { LocalChain } from './local';
import { openChain } from './network';
import type { Neuron, RevealedCommitment, ValidatorChain, WeightsReceipt, WeightsRequest, WeightsSettings } from './validator-chain';

interface AccountFile {
  hotkey: string;
  uid: number;
  commitments: { reveal_block: number; data_hex: string }[];
}

function readAccount(file: string): AccountFile | null {
  let o: unknown;
  try {
    o = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null; // being written by a miner right now, or damaged: not a registration
  }
  const a = o as Partial<AccountFile>;
  if (typeof a !== 'object' || a === null || typeof a.hotkey !== 'string' || !Number.isInteger(a.uid) || !Array.isArray(a.commitments)) return null;
  return a as AccountFile;
}

export class LocalValidatorChain implements ValidatorChain {
  readonly name = 'local';
  readonly kind = 'local' as const;

  private constructor(private readonly chain: LocalChain, private readonly dir: string) {}

  /** The local network in the working directory (created when absent, as the miner commands do). */
  static async open(blockTime: number): Promise<LocalValidatorChain> {
    const chain = (await openChain({ kind: 'local', name: 'local' }, blockTime)) as LocalChain;
    return new LocalValidatorChain(chain, chain.dir);
  }

  get blockTime(): number {
    return this.chain.blockTime;
  }

  currentBlock(): Promise<number> {
    return this.chain.currentBlock();
  }

  private accounts(netuid: number): AccountFile[] {
    const folder = path.join(this.dir, String(netuid));
    if (!fs.existsSync(folder)) return [];
    return fs
      .readdirSync(folder)
      .filter((f) => f.endsWith('.json'))
      .map((f) => readAccount(path.join(folder, f)))
      .filter((a): a is AccountFile => a !== null);
  }

  async neurons(netuid: number): Promise<Neuron[]> {
    return this.accounts(netuid).map((a) => ({ uid: a.uid, hotkey: a.hotkey }));
  }

  async revealed(netuid: number, hotkeys: string[]): Promise<RevealedCommitment[]> {
    const want = new Set(hotkeys);
    const cur = await this.currentBlock();
    const out: RevealedCommitment[] = [];
    for (const a of this.accounts(netuid)) {
      if (!want.has(a.hotkey)) continue;
      for (const c of a.commitments) {
        if (!Number.isInteger(c.reveal_block) || c.reveal_block > cur || typeof c.data_hex !== 'string' || !isHex(c.data_hex)) continue;
        out.push({ hotkey: a.hotkey, block: c.reveal_block, bytes: hexToU8a(c.data_hex) });
      }
    }
    return out;
  }

  async weightsSettings(): Promise<WeightsSettings> {
    return { commitReveal: false, versionKey: 0n, tempo: 360, revealPeriodEpochs: 1, commitRevealVersion: 4, rateLimit: 0 };
  }

  async setWeights(_req: WeightsRequest): Promise<WeightsReceipt> {
    return { mode: 'local', block: await this.currentBlock(), txHash: null, revealRound: null, versionKey: 0n };
  }

  async close(): Promise<void> {}
}
