// Writes Bittensor-style hotkey files (as btcli does) into a temporary wallets folder.
import * as fs from 'fs';
import * as path from 'path';
import { Keyring } from '@polkadot/keyring';
import { cryptoWaitReady, mnemonicGenerate, mnemonicToMiniSecret } from '@polkadot/util-crypto';
import { u8aToHex } from '@polkadot/util';

export interface TestHotkey {
  walletsDir: string;
  name: string;
  hotkey: string;
  address: string;
  mnemonic: string;
  seedHex: string;
  file: string;
}

export async function writeHotkey(walletsDir: string, name = 'miner', hotkey = 'hk', fields?: (f: Record<string, unknown>) => Record<string, unknown>): Promise<TestHotkey> {
  await cryptoWaitReady();
  const mnemonic = mnemonicGenerate();
  const seed = mnemonicToMiniSecret(mnemonic);
  const pair = new Keyring({ type: 'sr25519', ss58Format: 42 }).addFromSeed(seed);
  const base: Record<string, unknown> = {
    accountId: u8aToHex(pair.publicKey),
    publicKey: u8aToHex(pair.publicKey),
    secretPhrase: mnemonic,
    secretSeed: u8aToHex(seed),
    ss58Address: pair.address,
  };
  const file = path.join(walletsDir, name, 'hotkeys', hotkey);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify(fields ? fields(base) : base));
  return { walletsDir, name, hotkey, address: pair.address, mnemonic, seedHex: u8aToHex(seed), file };
}
