// The file-backed local network (--network local): commitments live under
// .local_commitments/ with a simulated block height, and are revealed after the
// same reveal delay as on chain. Nothing is encrypted (there is no beacon);
// the plaintext is simply not reported as revealed before its block.
//
//   .local_commitments/chain.json                  { "genesis_ms": <unix ms>, "block_time_s": <seconds> }
//   .local_commitments/<netuid>/<hotkey ss58>.json { "hotkey", "netuid", "last_commit_block",
//                                                    "commitments": [ { "block", "reveal_block", "data_hex" } ] }
// Height = floor((now - genesis_ms) / block_time_s). block_time_s is fixed when
// the folder is created: hparams' block_time, or TOURNAMENT_LOCAL_BLOCK_TIME
// (seconds, for quick local trials). Every hotkey counts as registered, with a
// uid given in order of first commitment. As on chain, a hotkey has at most one
// pending commitment: a new one replaces it (Commitments.set_commitment
// overwrites CommitmentOf), and it is then never revealed. The last 10 revealed
// ones are kept, as the chain keeps the last 10 reveals. Every file is checked
// for its shape when read: a damaged one is a UserError, never a crash.
import * as fs from 'fs';
import * as path from 'path';
import { u8aToHex, hexToU8a } from '@polkadot/util';
import { UserError } from '../errors';
import { writeAtomic } from '../util/atomic';
import { readJsonFile } from '../util/json';
import type { ChainStatus, CommitReceipt, CommitRequest, MinerChain } from './types';

interface LocalChainFile {
  genesis_ms: number;
  block_time_s: number;
}

interface LocalCommitment {
  block: number;
  reveal_block: number;
  data_hex: string;
}

interface LocalAccountFile {
  hotkey: string;
  netuid: number;
  uid: number;
  last_commit_block: number;
  commitments: LocalCommitment[];
}

const KEEP = 10;

const DAMAGED_HINT = 'delete .local_commitments/ to start the local network over';

function damaged(file: string, what: string): UserError {
  return new UserError(`the local network's state is damaged: ${file} ${what}`, { hint: DAMAGED_HINT });
}

const isInt = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function checkChainFile(file: string, v: unknown): LocalChainFile {
  const o = v as Partial<LocalChainFile> | null;
  if (typeof o !== 'object' || o === null || !Number.isFinite(o.genesis_ms) || typeof o.block_time_s !== 'number' || !(o.block_time_s > 0)) {
    throw damaged(file, 'is not { "genesis_ms": <number>, "block_time_s": <positive number> }');
  }
  return { genesis_ms: o.genesis_ms as number, block_time_s: o.block_time_s };
}

function checkAccountFile(file: string, v: unknown, address: string, netuid: number): LocalAccountFile {
  const o = v as Partial<LocalAccountFile> | null;
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw damaged(file, 'is not a JSON object');
  if (o.hotkey !== address || o.netuid !== netuid) throw damaged(file, `does not belong to hotkey ${address} on subnet ${netuid}`);
  if (!isInt(o.uid) || !isInt(o.last_commit_block)) throw damaged(file, 'has no valid "uid" or "last_commit_block"');
  if (!Array.isArray(o.commitments)) throw damaged(file, 'has no "commitments" list');
  for (const c of o.commitments as unknown[]) {
    const e = c as Partial<LocalCommitment> | null;
    if (typeof e !== 'object' || e === null || !isInt(e.block) || !isInt(e.reveal_block) || typeof e.data_hex !== 'string' || !/^0x([0-9a-f]{2})*$/.test(e.data_hex)) {
      throw damaged(file, 'holds a commitment that is not { "block", "reveal_block", "data_hex" }');
    }
  }
  return o as LocalAccountFile;
}

/** JSON of a state file, null when absent; unreadable or invalid JSON is the same "damaged" error. */
function readState(file: string): unknown {
  try {
    return readJsonFile<unknown>(file);
  } catch (e) {
    if (e instanceof UserError) throw damaged(file, 'cannot be read as JSON');
    throw e;
  }
}

export class LocalChain implements MinerChain {
  readonly name = 'local';
  private readonly chain: LocalChainFile;

  constructor(readonly dir: string, blockTimeS: number) {
    const file = path.join(dir, 'chain.json');
    const existing = readState(file);
    if (existing !== null) {
      this.chain = checkChainFile(file, existing);
    } else {
      if (!(blockTimeS > 0)) throw new UserError(`local block time must be positive, got ${blockTimeS}`);
      this.chain = { genesis_ms: Date.now(), block_time_s: blockTimeS };
      writeAtomic(file, [Buffer.from(JSON.stringify(this.chain, null, 2) + '\n')]);
    }
  }

  get blockTime(): number {
    return this.chain.block_time_s;
  }

  private height(): number {
    return Math.max(0, Math.floor((Date.now() - this.chain.genesis_ms) / (this.chain.block_time_s * 1000)));
  }

  private accountFile(netuid: number, address: string): string {
    if (!/^[1-9A-HJ-NP-Za-km-z]{40,60}$/.test(address)) throw new UserError(`${JSON.stringify(address)} is not an ss58 address`);
    return path.join(this.dir, String(netuid), `${address}.json`);
  }

  private account(netuid: number, address: string): LocalAccountFile | null {
    const file = this.accountFile(netuid, address);
    const v = readState(file);
    return v === null ? null : checkAccountFile(file, v, address, netuid);
  }

  async currentBlock(): Promise<number> {
    return this.height();
  }

  /** Everyone is registered locally: a new hotkey gets the next free uid. */
  private nextUid(netuid: number): number {
    const folder = path.join(this.dir, String(netuid));
    return fs.existsSync(folder) ? fs.readdirSync(folder).filter((f) => f.endsWith('.json')).length : 0;
  }

  async uidOf(netuid: number, address: string): Promise<number | null> {
    return this.account(netuid, address)?.uid ?? this.nextUid(netuid);
  }

  async lastCommitBlock(netuid: number, address: string): Promise<number | null> {
    return this.account(netuid, address)?.last_commit_block ?? null;
  }

  async submitCommitment(req: CommitRequest): Promise<CommitReceipt> {
    const address = req.hotkey.address;
    const block = this.height();
    const acc: LocalAccountFile = this.account(req.netuid, address) ?? { hotkey: address, netuid: req.netuid, uid: this.nextUid(req.netuid), last_commit_block: block, commitments: [] };
    const entry: LocalCommitment = { block, reveal_block: block + req.revealBlocks, data_hex: u8aToHex(req.plaintext) };
    acc.last_commit_block = block;
    // As set_commitment does: a still-pending commitment is overwritten, the revealed ones stay.
    const revealed = acc.commitments.filter((c) => c.reveal_block <= block).slice(-KEEP);
    acc.commitments = [...revealed, entry];
    writeAtomic(this.accountFile(req.netuid, address), [Buffer.from(JSON.stringify(acc, null, 2) + '\n')]);
    return { block, revealBlock: entry.reveal_block, bytes: req.plaintext.length };
  }

  async status(netuid: number, address: string): Promise<ChainStatus> {
    const acc = this.account(netuid, address);
    const cur = this.height();
    const all = acc?.commitments ?? [];
    return {
      currentBlock: cur,
      uid: acc?.uid ?? this.nextUid(netuid),
      lastCommitBlock: acc?.last_commit_block ?? null,
      pending: all.filter((c) => c.reveal_block > cur).map((c) => ({ block: c.block, revealBlock: c.reveal_block })),
      revealed: all.filter((c) => c.reveal_block <= cur).map((c) => ({ block: c.reveal_block, bytes: hexToU8a(c.data_hex) })),
    };
  }

  async close(): Promise<void> {}
}
