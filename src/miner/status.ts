// Where a hotkey's commitments stand: pending ones, revealed ones decoded (what
// validators will fetch), and when the next commitment is allowed.
import { decodePayload, redactPayload, PayloadError, CommitmentPayload } from '../chain/payload';
import type { ChainStatus, PendingStatus } from '../chain/types';
import { MinerContext, withChain } from './context';
import { describeLocation } from './storage';

export interface RevealedView {
  block: number;
  /** the payload with any read secret hidden; absent when the bytes are not a tournament commitment */
  payload?: CommitmentPayload;
  fetch?: string;
  not_ours?: string;
  raw_hex?: string;
}

export interface MinerStatus {
  chain: ChainStatus;
  pending: PendingStatus[];
  revealed: RevealedView[];
  /** the newest revealed tournament commitment: what validators fetch */
  latest: RevealedView | null;
  nextCommitBlock: number;
}

export async function minerStatus(ctx: MinerContext, address: string): Promise<MinerStatus> {
  const st = await withChain(ctx, (chain) => chain.status(ctx.netuid, address));
  const revealed: RevealedView[] = st.revealed.map((r) => {
    try {
      const p = decodePayload(r.bytes);
      return { block: r.block, payload: redactPayload(p), fetch: describeLocation(p.loc) };
    } catch (e) {
      if (!(e instanceof PayloadError)) throw e;
      return { block: r.block, not_ours: e.message, raw_hex: '0x' + Buffer.from(r.bytes.subarray(0, 64)).toString('hex') + (r.bytes.length > 64 ? '…' : '') };
    }
  });
  const latest = [...revealed].reverse().find((r) => r.payload) ?? null;
  const nextCommitBlock = st.lastCommitBlock === null ? st.currentBlock : Math.max(st.currentBlock, st.lastCommitBlock + ctx.hp.min_blocks_between_commits);
  return { chain: st, pending: st.pending, revealed, latest, nextCommitBlock };
}
