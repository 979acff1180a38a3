// Bittensor wallets as btcli writes them: ~/.bittensor/wallets/NAME/hotkeys/HOTKEY,
// a JSON file with the secret seed and/or phrase, or (for keys made from a URI
// such as //Alice) only the 64-byte private key; sr25519. Only the hotkey is
// needed here (commitments are signed by the hotkey). Secrets stay inside the
// returned KeyringPair: no error message or log line ever quotes them.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Keyring } from '@polkadot/keyring';
import type { KeyringPair } from '@polkadot/keyring/types';
import { cryptoWaitReady, mnemonicValidate, signatureVerify } from '@polkadot/util-crypto';
import { hexToU8a, isHex, stringToU8a, u8aToHex } from '@polkadot/util';
import { ed25519, RistrettoPoint } from '@noble/curves/ed25519';
import { bytesToNumberLE, equalBytes, numberToBytesLE } from '@noble/curves/utils';
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

/** Whether the hotkey file exists (the local network falls back to a development key when it does not). */
export function hotkeyExists(spec: WalletSpec): boolean {
  return fs.existsSync(hotkeyFile(spec));
}

// Encrypted keyfiles, by the prefix btwallet recognises them by: NaCl, Ansible
// vault, and the legacy Fernet format (base64 of a token that starts with 0x80).
const ENCRYPTED_PREFIX = /^(\$NACL|\$ANSIBLE_VAULT|\$BITTENSOR|gAAAAA)/;

/** The sr25519 public key of a secret scalar: scalar x the Ristretto base point. */
function publicOfScalar(scalar: bigint): Uint8Array | null {
  const s = scalar % ed25519.CURVE.n;
  return s === 0n ? null : RistrettoPoint.BASE.multiply(s).toRawBytes();
}

/**
 * The 64-byte secret in the form polkadot-js signs with. btwallet writes
 * schnorrkel's raw form (SecretKey::to_bytes: the scalar, then the nonce);
 * polkadot-js, like schnorrkel's to_ed25519_bytes, holds the scalar multiplied
 * by the cofactor 8 (a 3-bit shift of the 256-bit little-endian integer). Older
 * tools wrote that second form, so either is accepted: the one whose public key
 * is the file's. Without a public field the file is taken as btwallet's.
 */
function signingSecret(privateKey: Uint8Array, expectedPublic: Uint8Array | undefined, file: string): { secretKey: Uint8Array; publicKey: Uint8Array } {
  const key = bytesToNumberLE(privateKey.subarray(0, 32));
  const nonce = privateKey.subarray(32);
  const fromRaw = publicOfScalar(key);
  const asEd25519Form = (scalar: bigint) => Uint8Array.from([...numberToBytesLE((scalar << 3n) & ((1n << 256n) - 1n), 32), ...nonce]);
  const same = (a: Uint8Array | null, b: Uint8Array) => a !== null && equalBytes(a, b);
  if (fromRaw && (!expectedPublic || same(fromRaw, expectedPublic))) return { secretKey: asEd25519Form(key), publicKey: fromRaw };
  if (expectedPublic && (key & 7n) === 0n && same(publicOfScalar(key >> 3n), expectedPublic)) {
    return { secretKey: Uint8Array.from(privateKey), publicKey: expectedPublic };
  }
  throw new UserError(`hotkey file ${file}: "privateKey" does not derive its public key (${expectedPublic ? 'the file\'s "publicKey"/"ss58Address"' : 'not a valid sr25519 secret'})`);
}

/** Loads and checks the hotkey; every problem is a UserError that names the file, never its secrets. */
export async function loadHotkey(spec: WalletSpec): Promise<Hotkey> {
  return loadHotkeyFile(hotkeyFile(spec));
}

/** Loads a hotkey file in btwallet's format (see loadHotkey). */
export async function loadHotkeyFile(file: string): Promise<Hotkey> {
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
  if (ENCRYPTED_PREFIX.test(trimmed)) {
    throw new UserError(`hotkey file ${file} is encrypted; tournament needs an unencrypted hotkey (btcli's default for hotkeys)`, {
      hint: 'create an unencrypted hotkey with `btcli wallet new_hotkey` (hotkeys are unencrypted unless --use-password is given)',
    });
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

  // The file's public fields must describe the key its secret derives.
  let claimedPk: Uint8Array | undefined;
  const claimed = rec.ss58Address;
  if (typeof claimed === 'string' && claimed !== '') {
    try {
      claimedPk = keyring.decodeAddress(claimed);
    } catch {
      throw new UserError(`hotkey file ${file}: "ss58Address" is not a valid address`);
    }
    if (publicKey && Buffer.compare(Buffer.from(claimedPk), Buffer.from(publicKey)) !== 0) {
      throw new UserError(`hotkey file ${file}: "ss58Address" and "publicKey" name different keys`);
    }
  }
  const expectedPublic = publicKey ?? claimedPk;

  let pair: KeyringPair;
  if (seed) {
    pair = keyring.addFromSeed(seed);
  } else if (typeof phrase === 'string' && phrase.trim()) {
    if (!mnemonicValidate(phrase.trim())) throw new UserError(`hotkey file ${file}: "secretPhrase" is not a valid mnemonic`);
    pair = keyring.addFromMnemonic(phrase.trim());
  } else if (privateKey) {
    pair = keyring.addFromPair(signingSecret(privateKey, expectedPublic, file));
    const probe = stringToU8a('tournament key check');
    if (!signatureVerify(probe, pair.sign(probe), pair.publicKey).isValid) {
      throw new UserError(`hotkey file ${file}: "privateKey" does not sign for its public key`);
    }
  } else {
    throw new UserError(`hotkey file ${file} holds no secret (expected "secretSeed", "secretPhrase" or "privateKey")`);
  }
  if (expectedPublic && Buffer.compare(Buffer.from(expectedPublic), Buffer.from(pair.publicKey)) !== 0) {
    throw new UserError(`hotkey file ${file}: its secret derives ${pair.address}, not the "${publicKey ? 'publicKey' : 'ss58Address'}" it names`);
  }
  return { address: pair.address, file, pair };
}

/**
 * A development hotkey at `file`: created on first use (a fresh random seed, in
 * btwallet's format), the same key afterwards. Two processes racing to create it
 * end up with the one that was linked first.
 */
export async function devHotkey(file: string): Promise<Hotkey> {
  if (!fs.existsSync(file)) {
    await cryptoWaitReady();
    const seed = crypto.randomBytes(32);
    const pair = new Keyring({ type: 'sr25519', ss58Format: SS58_FORMAT }).addFromSeed(seed);
    const pk = u8aToHex(pair.publicKey);
    const body = JSON.stringify({ accountId: pk, publicKey: pk, secretSeed: u8aToHex(seed), ss58Address: pair.address }) + '\n';
    fs.mkdirSync(path.dirname(file), { recursive: true });
    const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`;
    fs.writeFileSync(tmp, body, { mode: 0o600 });
    try {
      fs.linkSync(tmp, file);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    } finally {
      fs.rmSync(tmp, { force: true });
    }
  }
  return loadHotkeyFile(file);
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
