// What every miner step needs: the tournament settings, the network and the
// subnet, and the hotkey that signs. Resolved once per command.
import { UserError } from '../errors';
import { loadHparams, Hparams } from '../config/hparams';
import { resolveNetwork, openChain, localDevHotkeyFile, NetworkSpec } from '../chain/network';
import type { MinerChain } from '../chain/types';
import type { Hotkey, WalletSpec } from '../wallet/wallet';
// The wallet (@polkadot/keyring) and chain modules load only when a step needs
// them: every CLI start would otherwise pay for them.

export interface MinerContext {
  hp: Hparams;
  network: NetworkSpec;
  netuid: number;
}

export function minerContext(o: { hparams: string; network: string; netuid?: number }): MinerContext {
  const hp = loadHparams(o.hparams);
  const network = resolveNetwork(o.network);
  const netuid = o.netuid ?? hp.netuid;
  if (!Number.isInteger(netuid) || netuid < 0 || netuid > 65535) throw new UserError(`--netuid must be an integer in [0, 65535], got ${o.netuid}`);
  return { hp, network, netuid };
}

/** The wallet flags as given: undefined where the user left the default. */
export interface WalletChoice {
  name?: string;
  hotkey?: string;
  path?: string;
}

export interface SigningHotkey extends Hotkey {
  /** true when this is the local network's generated development hotkey */
  dev: boolean;
}

/**
 * The hotkey that signs. On --network local, with no wallet flag given and no
 * default wallet on disk, a development hotkey kept under the local network's
 * folder stands in, so the local network works before any wallet exists.
 */
export async function signingHotkey(ctx: MinerContext, choice: WalletChoice): Promise<SigningHotkey> {
  const wallet = await import('../wallet/wallet');
  const spec: WalletSpec = { name: choice.name ?? 'default', hotkey: choice.hotkey ?? 'default', path: choice.path };
  const untouched = choice.name === undefined && choice.hotkey === undefined && choice.path === undefined;
  if (ctx.network.kind === 'local' && untouched && !wallet.hotkeyExists(spec)) {
    return { ...(await wallet.devHotkey(localDevHotkeyFile())), dev: true };
  }
  return { ...(await wallet.loadHotkey(spec)), dev: false };
}

/** The hotkey to look at: `address` (checked, normalised) when given, else the signing hotkey's. */
export async function hotkeyAddress(ctx: MinerContext, address: string | undefined, choice: WalletChoice): Promise<string> {
  if (address !== undefined) return (await import('../wallet/wallet')).normaliseAddress(address);
  return (await signingHotkey(ctx, choice)).address;
}

/** Opens the network, runs `fn`, and always closes it. */
export async function withChain<T>(ctx: MinerContext, fn: (chain: MinerChain) => Promise<T>): Promise<T> {
  const chain = await openChain(ctx.network, ctx.hp.block_time);
  try {
    return await fn(chain);
  } finally {
    await chain.close();
  }
}
