// Bittensor wallets as btcli writes them: ~/.bittensor/wallets/NAME/hotkeys/HOTKEY,
// a JSON file with the secret seed and/or phrase, sr25519. Only the hotkey is
// needed here (commitments are signed by the hotkey). Secrets stay inside the
// returned KeyringPair: no error message or log line ever quotes them.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Keyring } from '@polkadot/keyring';
import type { KeyringPair } from '@polkadot/keyring/types';
import { cryptoWaitReady, mnemonicValidate, signatureVerify } from '@polkadot/util-crypto';
import { hexToU8a, isHex, stringToU8a } from '@polkadot/util';
import { UserError } from '../errors';

const DEFAULT_WALLET_PATH = path.join(os.homedir(), '.bittensor', 'wallets');
/** Bittensor's SS58 prefix (42, the generic substrate one). */
const SS58_FORMAT = 42;

export interface WalletSpec {
  name: string;
  hotkey: string;
  path?: string; // folder holding the wallets; default ~/.bittensor/wallets
}

export interface Hotkey {
  /** ss58 address: public, safe to print. */
  address: string;
  /** file it came from: safe to print. */
  file: string;
  /** the signing pair; never serialise it. */
  pair: KeyringPair;
}

function expandHome(p: string): string {
  return p === '~' || p.startsWith('~/') ? path.join(os.homedir(), p.slice(1)) : p;
}

export function hotkeyFile(spec: WalletSpec): string {
  for (const [what, v] of [['wallet name', spec.name], ['hotkey name', spec.hotkey]] as const) {
    if (!v || v.includes('/') || v.includes('\\') || v === '.' || v === '..') {
      throw new UserError(`invalid ${what} ${JSON.stringify(v)}: give a plain name`);
    }
  }
  return path.join(path.resolve(expandHome(spec.path ?? DEFAULT_WALLET_PATH)), spec.name, 'hotkeys', spec.hotkey);
}

function hexField(o: Record<string, unknown>, key: string, bytes: number, file: string): Uint8Array | undefined {
  const v = o[key];
  if (v === undefined || v === null) return undefined;
  if (typeof v !== 'string' || !isHex(v.startsWith('0x') ? v : `0x${v}`) || (v.replace(/^0x/, '').length !== bytes * 2)) {
    throw new UserError(`hotkey file ${file}: "${key}" must be ${bytes} bytes of hex`);
  }
  return hexToU8a(v.startsWith('0x') ? v : `0x${v}`);
}

/** Loads and checks the hotkey; every problem is a UserError that names the file, never its secrets. */
export async function loadHotkey(spec: WalletSpec): Promise<Hotkey> {
  const file = hotkeyFile(spec);
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new UserError(`no hotkey file at ${file}`, {
        hint: 'create one with `btcli wallet new_hotkey`, or pass --wallet.name, --wallet.hotkey and --wallet.path',
      });
    }
    throw new UserError(`cannot read hotkey file ${file}: ${code ?? 'unknown error'}`);
  }
  const trimmed = text.trim();
  if (/^\$(NACL|ANSIBLE_VAULT|BITTENSOR)/.test(trimmed)) {
    throw new UserError(`hotkey file ${file} is encrypted; tournament needs an unencrypted hotkey (btcli's default for hotkeys)`);
  }
  let o: unknown;
  try {
    o = JSON.parse(trimmed);
  } catch {
    throw new UserError(`hotkey file ${file} is not valid JSON`);
  }
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new UserError(`hotkey file ${file} must hold a JSON object`);
  const rec = o as Record<string, unknown>;

  await cryptoWaitReady();
  const keyring = new Keyring({ type: 'sr25519', ss58Format: SS58_FORMAT });
  const seed = hexField(rec, 'secretSeed', 32, file);
  const phrase = rec.secretPhrase;
  const privateKey = hexField(rec, 'privateKey', 64, file);
  const publicKey = hexField(rec, 'publicKey', 32, file);
  let pair: KeyringPair;
  if (seed) {
    pair = keyring.addFromSeed(seed);
  } else if (typeof phrase === 'string' && phrase.trim()) {
    if (!mnemonicValidate(phrase.trim())) throw new UserError(`hotkey file ${file}: "secretPhrase" is not a valid mnemonic`);
    pair = keyring.addFromMnemonic(phrase.trim());
  } else if (privateKey && publicKey) {
    pair = keyring.addFromPair({ publicKey, secretKey: privateKey });
    const probe = stringToU8a('tournament key check');
    if (!signatureVerify(probe, pair.sign(probe), pair.publicKey).isValid) {
      throw new UserError(`hotkey file ${file}: "privateKey" does not match "publicKey"`);
    }
  } else {
    throw new UserError(`hotkey file ${file} holds no secret (expected "secretSeed", "secretPhrase" or "privateKey")`);
  }

  // The file's public fields must describe the key its secret derives.
  const claimed = rec.ss58Address;
  if (typeof claimed === 'string' && claimed !== '') {
    let claimedPk: Uint8Array;
    try {
      claimedPk = keyring.decodeAddress(claimed);
    } catch {
      throw new UserError(`hotkey file ${file}: "ss58Address" is not a valid address`);
    }
    if (Buffer.compare(Buffer.from(claimedPk), Buffer.from(pair.publicKey)) !== 0) {
      throw new UserError(`hotkey file ${file}: its secret derives ${pair.address}, not the "ss58Address" ${claimed} it names`);
    }
  }
  if (publicKey && Buffer.compare(Buffer.from(publicKey), Buffer.from(pair.publicKey)) !== 0) {
    throw new UserError(`hotkey file ${file}: its secret does not derive its "publicKey"`);
  }
  return { address: pair.address, file, pair };
}

/** Checks an ss58 address (e.g. --hotkey for status); returns it normalised to prefix 42. */
export function normaliseAddress(addr: string): string {
  const keyring = new Keyring({ type: 'sr25519', ss58Format: SS58_FORMAT });
  try {
    return keyring.encodeAddress(keyring.decodeAddress(addr));
  } catch {
    throw new UserError(`${JSON.stringify(addr)} is not a valid ss58 address`);
  }
}
