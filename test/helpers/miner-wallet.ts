// Writes Bittensor-style hotkey files (as btcli does) into a temporary wallets folder:
// from a mnemonic (seed and phrase), or from a URI (the private key alone).
import * as fs from 'fs';
import * as path from 'path';
import { Keyring } from '@polkadot/keyring';
import { cryptoWaitReady, mnemonicGenerate, mnemonicToMiniSecret } from '@polkadot/util-crypto';
import { u8aToHex } from '@polkadot/util';
import { RistrettoPoint } from '@noble/curves/ed25519';
import { bytesToNumberLE, numberToBytesLE } from '@noble/curves/utils';

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

export interface UriHotkey {
  file: string;
  address: string;
  /** the privateKey field as written: schnorrkel's raw form */
  privateKeyHex: string;
}

/**
 * Writes the hotkey file `btcli wallet create --uri URI` writes: the public
 * fields and only the 64-byte privateKey, in schnorrkel's raw form
 * (SecretKey::to_bytes, as btwallet's Keypair::private_key returns it), no seed
 * and no phrase. polkadot-js holds the ed25519 form (the scalar times 8), so the
 * raw scalar is that divided by 8; the helper checks, with an independent
 * Ristretto implementation, that the raw scalar times the base point is the
 * public key, i.e. that the file holds what schnorrkel would.
 */
export async function writeUriHotkey(walletsDir: string, uri: string, name = 'uri', hotkey = 'hk'): Promise<UriHotkey> {
  await cryptoWaitReady();
  const pair = new Keyring({ type: 'sr25519', ss58Format: 42 }).addFromUri(uri);
  // polkadot's pkcs8: a 16-byte header, the 64-byte secret (ed25519 form), a divider, the public key
  const secret = (pair as unknown as { encodePkcs8(): Uint8Array }).encodePkcs8().subarray(16, 16 + 64);
  const scalar8 = bytesToNumberLE(secret.subarray(0, 32));
  if (scalar8 % 8n !== 0n) throw new Error('polkadot-js secret is not in the ed25519 form');
  const raw = Uint8Array.from([...numberToBytesLE(scalar8 >> 3n, 32), ...secret.subarray(32)]);
  const pub = RistrettoPoint.BASE.multiply(bytesToNumberLE(raw.subarray(0, 32))).toRawBytes();
  if (u8aToHex(pub) !== u8aToHex(pair.publicKey)) throw new Error('raw scalar x base point is not the public key');
  const pk = u8aToHex(pair.publicKey);
  const file = path.join(walletsDir, name, 'hotkeys', hotkey);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  // btwallet's field set for a key without mnemonic or seed (its keyfile serialiser)
  fs.writeFileSync(file, JSON.stringify({ accountId: pk, publicKey: pk, privateKey: u8aToHex(raw), ss58Address: pair.address, cryptoType: 1 }));
  return { file, address: pair.address, privateKeyHex: u8aToHex(raw) };
}
