// Subtensor through @polkadot/api: registration and rate-limit look-ups, the
// timelocked Commitments.set_commitment signed by the hotkey, and the state of
// a hotkey's commitments. Every failure a user can meet (endpoint down, a
// refused extrinsic) becomes a UserError.
import { ApiPromise, WsProvider } from '@polkadot/api';
import type { SubmittableExtrinsic, SubmittableResultValue } from '@polkadot/api/types';
import type { KeyringPair } from '@polkadot/keyring/types';
import type { ProviderInterface } from '@polkadot/rpc-provider/types';
import { UserError } from '../errors';
import { SUBTENSOR_SIGNED_EXTENSIONS, timelockCommitmentInfo, parseCommitmentOf, parseRevealedCommitments, parseOptionalNumber } from './codec';
import { MAX_TIMELOCK_COMMITMENT_BYTES } from './limits';
import { timelockEncrypt, revealRound, roundTime, QUICKNET } from './timelock';
import type { ChainStatus, CommitReceipt, CommitRequest, MinerChain } from './types';

export function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let t: NodeJS.Timeout;
  const timer = new Promise<never>((_, reject) => {
    t = setTimeout(() => reject(new UserError(`${what} timed out after ${Math.round(ms / 1000)} s`)), ms);
  });
  return Promise.race([p, timer]).finally(() => clearTimeout(t));
}

/**
 * Signs and sends `tx`, waits until it is in a block and checks its outcome;
 * `what` names it in errors ("commitment", "weights"). Every failure is a UserError.
 */
export async function signAndWatch(api: ApiPromise, tx: SubmittableExtrinsic<'promise'>, pair: KeyringPair, what: string): Promise<{ block: number; txHash: string }> {
  const result = await withTimeout(
    new Promise<SubmittableResultValue & { blockHash: string }>((resolve, reject) => {
      let unsub: (() => void) | undefined;
      tx.signAndSend(pair, (res) => {
        if (res.status.isInBlock || res.status.isFinalized) {
          unsub?.();
          resolve({ ...res, blockHash: res.status.isInBlock ? res.status.asInBlock.toHex() : res.status.asFinalized.toHex() } as never);
        } else if (res.status.isDropped || res.status.isInvalid || res.status.isUsurped) {
          unsub?.();
          reject(new UserError(`the ${what} transaction was ${res.status.type.toLowerCase()} by the chain`));
        }
      })
        .then((u) => (unsub = u))
        .catch((e: Error) => reject(new UserError(`the chain refused the ${what}: ${e.message}`)));
    }),
    180000,
    `waiting for the ${what} to be included in a block`,
  );
  if (result.dispatchError) {
    let reason = result.dispatchError.toString();
    if (result.dispatchError.isModule) {
      const meta = api.registry.findMetaError(result.dispatchError.asModule);
      reason = `${meta.section}.${meta.name}: ${meta.docs.join(' ').trim()}`;
    }
    throw new UserError(`the chain rejected the ${what}: ${reason}`);
  }
  const header = await api.rpc.chain.getHeader(result.blockHash);
  return { block: header.number.toNumber(), txHash: tx.hash.toHex() };
}

export class SubtensorChain implements MinerChain {
  private constructor(readonly name: string, readonly api: ApiPromise, readonly blockTime: number) {}

  /** Connects, or throws a UserError saying the endpoint cannot be reached. */
  static async connect(name: string, url: string, blockTime: number, timeoutMs = 30000): Promise<SubtensorChain> {
    const provider = new WsProvider(url, false);
    // The provider logs every failed attempt; the error below says it once.
    provider.on('error', () => undefined);
    try {
      await withTimeout(provider.connect(), timeoutMs, `connecting to ${url}`);
      return await SubtensorChain.over(name, provider, { blockTime, where: url, timeoutMs });
    } catch (e) {
      await provider.disconnect().catch(() => undefined);
      if (e instanceof UserError) throw e;
      const where = name === url ? url : `${name} at ${url}`;
      throw new UserError(`cannot reach ${where}: ${(e as Error).message}`, { hint: 'check the network connection and --network' });
    }
  }

  /**
   * The client over an already connected provider (tests use an in-process node).
   * blockTime (hparams' block_time) sets reveal rounds and reveal-block estimates;
   * `where` names the node in errors.
   */
  static async over(
    name: string,
    provider: ProviderInterface,
    { blockTime, where = 'this node', timeoutMs = 30000 }: { blockTime: number; where?: string; timeoutMs?: number },
  ): Promise<SubtensorChain> {
    const api = await withTimeout(
      ApiPromise.create({ provider, signedExtensions: SUBTENSOR_SIGNED_EXTENSIONS, noInitWarn: true, throwOnConnect: true }),
      timeoutMs,
      `connecting to ${name}`,
    );
    if (!api.tx.commitments?.setCommitment || !api.query.subtensorModule?.uids) {
      await api.disconnect();
      throw new UserError(`${where} is not a subtensor node (no Commitments or SubtensorModule pallet)`);
    }
    return new SubtensorChain(name, api, blockTime);
  }

  async currentBlock(): Promise<number> {
    const header = await this.api.rpc.chain.getHeader();
    return header.number.toNumber();
  }

  async uidOf(netuid: number, address: string): Promise<number | null> {
    return parseOptionalNumber(await this.api.query.subtensorModule.uids(netuid, address));
  }

  async lastCommitBlock(netuid: number, address: string): Promise<number | null> {
    return parseOptionalNumber(await this.api.query.commitments.lastCommitment(netuid, address));
  }

  async submitCommitment(req: CommitRequest): Promise<CommitReceipt> {
    const round = revealRound(req.revealBlocks * this.blockTime, Date.now(), QUICKNET);
    const encrypted = timelockEncrypt(req.plaintext, round, QUICKNET.publicKey);
    if (encrypted.length > MAX_TIMELOCK_COMMITMENT_BYTES) {
      throw new UserError(`the encrypted commitment is ${encrypted.length} bytes; the chain takes at most ${MAX_TIMELOCK_COMMITMENT_BYTES}`);
    }
    const tx = this.api.tx.commitments.setCommitment(req.netuid, timelockCommitmentInfo(encrypted, round));
    const { block, txHash } = await signAndWatch(this.api, tx, req.hotkey.pair, 'commitment');
    return {
      block,
      revealRound: round,
      revealBlock: block + req.revealBlocks,
      bytes: encrypted.length,
      txHash,
    };
  }

  async status(netuid: number, address: string): Promise<ChainStatus> {
    const [cur, uid, last, pendingRaw, revealedRaw] = await Promise.all([
      this.currentBlock(),
      this.uidOf(netuid, address),
      this.lastCommitBlock(netuid, address),
      this.api.query.commitments.commitmentOf(netuid, address),
      this.api.query.commitments.revealedCommitments(netuid, address),
    ]);
    const pending = parseCommitmentOf(pendingRaw);
    const nowS = Date.now() / 1000;
    return {
      currentBlock: cur,
      uid,
      lastCommitBlock: last,
      pending: (pending?.fields ?? []).map((f) => ({
        block: pending!.block,
        revealRound: f.revealRound,
        revealBlock: cur + Math.max(0, Math.ceil((roundTime(f.revealRound) - nowS) / this.blockTime)),
      })),
      revealed: parseRevealedCommitments(revealedRaw),
    };
  }

  async close(): Promise<void> {
    await this.api.disconnect().catch(() => undefined);
  }
}
