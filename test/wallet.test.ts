import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Keyring } from '@polkadot/keyring';
import { u8aToHex } from '@polkadot/util';
import { signatureVerify } from '@polkadot/util-crypto';
import { loadHotkey, hotkeyFile, normaliseAddress } from '../src/wallet/wallet';
import { UserError } from '../src/errors';
import { writeHotkey, writeUriHotkey } from './helpers/miner-wallet';

describe('wallet: Bittensor hotkey files', function () {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wallet-test-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  async function expectUserError(p: Promise<unknown>, re: RegExp, secrets: string[] = []) {
    await assert.rejects(p, (e: unknown) => {
      assert.ok(e instanceof UserError, `not a UserError: ${e}`);
      assert.match((e as Error).message, re);
      for (const s of secrets) {
        assert.ok(!(e as Error).message.includes(s) && !((e as UserError).hint ?? '').includes(s), 'a secret leaked into the error');
      }
      return true;
    });
  }

  it('follows btcli\'s layout', function () {
    assert.equal(hotkeyFile({ name: 'w', hotkey: 'h', path: '/x' }), path.join('/x', 'w', 'hotkeys', 'h'));
    assert.throws(() => hotkeyFile({ name: '../w', hotkey: 'h', path: '/x' }), UserError);
  });

  it('loads a hotkey from its secret seed and signs with it', async function () {
    const hk = await writeHotkey(dir);
    const loaded = await loadHotkey({ name: hk.name, hotkey: hk.hotkey, path: dir });
    assert.equal(loaded.address, hk.address);
    const msg = new TextEncoder().encode('hello');
    assert.ok(signatureVerify(msg, loaded.pair.sign(msg), hk.address).isValid);
  });

  it('loads from the phrase alone, and from a key pair alone', async function () {
    const hk = await writeHotkey(dir, 'a', 'h', (f) => ({ secretPhrase: f.secretPhrase, ss58Address: f.ss58Address }));
    assert.equal((await loadHotkey({ name: 'a', hotkey: 'h', path: dir })).address, hk.address);
    const pair = new Keyring({ type: 'sr25519' }).addFromUri('//Bob');
    const pkcs8Pair = (pair as unknown as { encodePkcs8(): Uint8Array }).encodePkcs8();
    // polkadot's pkcs8 ends with the 64-byte secret key then the 32-byte public key
    const secretKey = pkcs8Pair.subarray(16, 16 + 64);
    const file = path.join(dir, 'b', 'hotkeys', 'h');
    fs.mkdirSync(path.dirname(file), { recursive: true });
    fs.writeFileSync(file, JSON.stringify({ privateKey: u8aToHex(secretKey), publicKey: u8aToHex(pair.publicKey), ss58Address: pair.address }));
    assert.equal((await loadHotkey({ name: 'b', hotkey: 'h', path: dir })).address, new Keyring({ type: 'sr25519', ss58Format: 42 }).encodeAddress(pair.publicKey));
  });

  it('loads a hotkey btcli made from a URI (only the private key, in schnorrkel\'s raw form) and signs with it', async function () {
    // //Alice's well-known public key, as every substrate dev chain lists it
    const ALICE = '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY';
    const hk = await writeUriHotkey(dir, '//Alice');
    assert.equal(hk.address, ALICE);
    const loaded = await loadHotkey({ name: 'uri', hotkey: 'hk', path: dir });
    assert.equal(loaded.address, ALICE);
    const msg = new TextEncoder().encode('commitment');
    assert.ok(signatureVerify(msg, loaded.pair.sign(msg), ALICE).isValid);
    // the private key alone is enough: btwallet's form is assumed
    fs.writeFileSync(hk.file, JSON.stringify({ privateKey: hk.privateKeyHex }));
    assert.equal((await loadHotkey({ name: 'uri', hotkey: 'hk', path: dir })).address, ALICE);
    // and it must derive the public key the file names
    const bob = new Keyring({ type: 'sr25519', ss58Format: 42 }).addFromUri('//Bob');
    fs.writeFileSync(hk.file, JSON.stringify({ privateKey: hk.privateKeyHex, publicKey: u8aToHex(bob.publicKey) }));
    await expectUserError(loadHotkey({ name: 'uri', hotkey: 'hk', path: dir }), /"privateKey" does not derive its public key/, [hk.privateKeyHex, hk.privateKeyHex.slice(2)]);
  });

  it('says clearly what is wrong, never quoting secrets', async function () {
    const hk = await writeHotkey(dir);
    const spec = { name: hk.name, hotkey: hk.hotkey, path: dir };
    const secrets = [hk.mnemonic, hk.seedHex, hk.seedHex.slice(2)];
    await expectUserError(loadHotkey({ ...spec, hotkey: 'nope' }), /no hotkey file at/);
    fs.writeFileSync(hk.file, '{ not json ' + hk.mnemonic);
    await expectUserError(loadHotkey(spec), /not valid JSON/, secrets);
    fs.writeFileSync(hk.file, '$NACL' + 'x'.repeat(40));
    await expectUserError(loadHotkey(spec), /encrypted/);
    // btwallet's legacy encryption: a Fernet token, base64 starting "gAAAAA"
    fs.writeFileSync(hk.file, 'gAAAAABl' + 'x'.repeat(80));
    await expectUserError(loadHotkey(spec), /is encrypted; tournament needs an unencrypted hotkey/);
    fs.writeFileSync(hk.file, JSON.stringify({ ss58Address: hk.address }));
    await expectUserError(loadHotkey(spec), /holds no secret/);
    fs.writeFileSync(hk.file, JSON.stringify({ secretSeed: '0x1234' }));
    await expectUserError(loadHotkey(spec), /"secretSeed" must be 32 bytes/);
    fs.writeFileSync(hk.file, JSON.stringify({ secretPhrase: hk.mnemonic.split(' ').reverse().join(' ') + ' extra' }));
    await expectUserError(loadHotkey(spec), /not a valid mnemonic/, secrets);
    const other = new Keyring({ type: 'sr25519', ss58Format: 42 }).addFromUri('//Charlie').address;
    fs.writeFileSync(hk.file, JSON.stringify({ secretSeed: hk.seedHex, ss58Address: other }));
    await expectUserError(loadHotkey(spec), /not the "ss58Address"/, secrets);
  });

  it('normalises addresses and rejects bad ones', function () {
    const alice = new Keyring({ type: 'sr25519', ss58Format: 0 }).addFromUri('//Alice');
    assert.equal(normaliseAddress(alice.address), new Keyring({ type: 'sr25519', ss58Format: 42 }).encodeAddress(alice.publicKey));
    assert.throws(() => normaliseAddress('5notanaddress'), UserError);
  });
});
