import { strict as assert } from 'assert';
import { u8aToHex, hexToU8a, compactAddLength, compactStripLength } from '@polkadot/util';
import { Keyring } from '@polkadot/keyring';
import { xxhashAsU8a, blake2AsU8a } from '@polkadot/util-crypto';
import { expandMetadata } from '@polkadot/types';
import { timelockCommitmentInfo, parseCommitmentOf, parseRevealedCommitments, parseOptionalNumber } from '../src/chain/codec';
import { MAX_TIMELOCK_COMMITMENT_BYTES } from '../src/chain/limits';
import { encodePayload, decodePayload, MAX_PAYLOAD_BYTES, CommitmentPayload } from '../src/chain/payload';
import { timelockEncrypt, QUICKNET } from '../src/chain/timelock';
import { finneyMetadata } from './helpers/chain-fixtures';
import { registryFromMetadataHex, decodeStorageValue } from './helpers/chain-metadata';

const ALICE = new Keyring({ type: 'sr25519', ss58Format: 42 }).addFromUri('//Alice').address;

function twox64Concat(data: Uint8Array): Uint8Array {
  return new Uint8Array([...xxhashAsU8a(data, 64), ...data]);
}
function prefix(pallet: string, item: string): Uint8Array {
  return new Uint8Array([...xxhashAsU8a(pallet, 128), ...xxhashAsU8a(item, 128)]);
}
function u16le(n: number): Uint8Array {
  return new Uint8Array([n & 0xff, n >> 8]);
}

describe('subtensor calls and storage against real finney metadata', function () {
  let registry: ReturnType<typeof registryFromMetadataHex>['registry'];
  let d: ReturnType<typeof expandMetadata>;
  const alicePk = new Keyring({ type: 'sr25519' }).decodeAddress(ALICE);

  before(function () {
    const m = registryFromMetadataHex(finneyMetadata().v14);
    registry = m.registry;
    d = expandMetadata(m.registry, m.metadata);
  });

  it('encodes Commitments.set_commitment with a TimelockEncrypted field and decodes it back', function () {
    const encrypted = timelockEncrypt(encodePayload({ v: 1, sha256: 'a'.repeat(64), size: 10, loc: { kind: 'local', key: 'k' } }), 1000, QUICKNET.publicKey);
    const call = d.tx.commitments.setCommitment(3, timelockCommitmentInfo(encrypted, 123456789n));
    const bytes = call.toU8a();
    // call index: pallet, call 0; netuid u16; one field; variant 134; compact length; bytes; reveal_round u64
    const palletIndex = d.tx.commitments.setCommitment.callIndex[0];
    assert.deepEqual(Array.from(bytes.subarray(0, 2)), [palletIndex, 0]);
    assert.deepEqual(Array.from(bytes.subarray(2, 4)), [3, 0]);
    assert.equal(bytes[4], 4); // compact(1)
    assert.equal(bytes[5], 134);
    const lenPrefix = registry.createType('Compact<u32>', encrypted.length).toU8a();
    assert.deepEqual(Array.from(bytes.subarray(6, 6 + lenPrefix.length)), Array.from(lenPrefix));
    const tail = bytes.subarray(bytes.length - 8);
    assert.equal(Buffer.from(tail).readBigUInt64LE(0), 123456789n);

    const back = registry.createType('Call', bytes);
    assert.equal(back.section, 'commitments');
    assert.equal(back.method, 'setCommitment');
    const args = back.toJSON() as { args: { netuid: number; info: { fields: { timelockEncrypted: { encrypted: string; revealRound: number } }[] } } };
    assert.equal(args.args.netuid, 3);
    const f = args.args.info.fields[0].timelockEncrypted;
    assert.equal(f.encrypted, u8aToHex(encrypted));
    assert.equal(Number(f.revealRound), 123456789);
  });

  it('the chain bound leaves room for our payloads', function () {
    assert.equal(MAX_TIMELOCK_COMMITMENT_BYTES, 1024);
    assert.ok(MAX_PAYLOAD_BYTES >= 700, `only ${MAX_PAYLOAD_BYTES} bytes of payload`);
    const big = d.tx.commitments.setCommitment(3, timelockCommitmentInfo(new Uint8Array(MAX_TIMELOCK_COMMITMENT_BYTES), 1n));
    assert.ok(big.toU8a().length > MAX_TIMELOCK_COMMITMENT_BYTES);
  });

  it('builds the storage keys of RevealedCommitments, CommitmentOf (Twox64Concat account) and Uids (Blake2_128Concat account)', function () {
    const cases: [string, string, string, (a: number, b: string) => Uint8Array][] = [
      ['Commitments', 'RevealedCommitments', 'Twox64Concat', d.query.commitments.revealedCommitments as never],
      ['Commitments', 'CommitmentOf', 'Twox64Concat', d.query.commitments.commitmentOf as never],
      ['SubtensorModule', 'Uids', 'Blake2_128Concat', d.query.subtensorModule.uids as never],
    ];
    for (const [pallet, item, hasher, entry] of cases) {
      const hashers = (entry as unknown as { meta: { type: { asMap: { hashers: { toString(): string }[] } } } }).meta.type.asMap.hashers.map(String);
      assert.deepEqual(hashers, ['Identity', hasher], `${pallet}.${item} hashers`);
      const [, key] = compactStripLength(entry(7, ALICE)); // the decorated key carries a length prefix
      const accountPart = hasher === 'Twox64Concat' ? twox64Concat(alicePk) : new Uint8Array([...blake2AsU8a(alicePk, 128), ...alicePk]);
      const expected = new Uint8Array([...prefix(pallet, item), ...u16le(7), ...accountPart]);
      assert.equal(u8aToHex(key), u8aToHex(expected), `${pallet}.${item}`);
    }
  });

  it('decodes RevealedCommitments values into (bytes, block) pairs', function () {
    const entry = d.query.commitments.revealedCommitments;
    const payload: CommitmentPayload = { v: 1, sha256: 'b'.repeat(64), size: 42, loc: { kind: 'url', url: 'https://pub.example/x.cpp' } };
    const value = registry.createType('Vec<(Bytes,u64)>', [[compactAddLength(encodePayload(payload)), 5000], [compactAddLength(new Uint8Array([1, 2])), 5100]]).toU8a();
    const parsed = parseRevealedCommitments(decodeStorageValue(registry, entry as never, value));
    assert.equal(parsed.length, 2);
    assert.equal(parsed[0].block, 5000);
    assert.deepEqual(decodePayload(parsed[0].bytes), payload);
    assert.deepEqual(Array.from(parsed[1].bytes), [1, 2]);
    assert.deepEqual(parseRevealedCommitments(decodeStorageValue(registry, entry as never, new Uint8Array())), []);
  });

  it('decodes CommitmentOf values: block and the pending reveal round', function () {
    const entry = d.query.commitments.commitmentOf;
    const valueType = registry.createLookupType((entry as never as { meta: { type: { asMap: { value: { toNumber(): number } } } } }).meta.type.asMap.value.toNumber());
    const encrypted = new Uint8Array(300).fill(7);
    const raw = registry.createType(valueType, { deposit: 0, block: 4242, info: timelockCommitmentInfo(encrypted, 99999n) }).toU8a();
    const pending = parseCommitmentOf(decodeStorageValue(registry, entry as never, raw));
    assert.ok(pending);
    assert.equal(pending!.block, 4242);
    assert.equal(pending!.fields.length, 1);
    assert.equal(pending!.fields[0].revealRound, 99999n);
    assert.equal(pending!.fields[0].encryptedBytes, 300);
    assert.equal(parseCommitmentOf(decodeStorageValue(registry, entry as never, new Uint8Array())), null);
  });

  it('decodes Uids values as an optional u16', function () {
    const entry = d.query.subtensorModule.uids;
    assert.equal(parseOptionalNumber(decodeStorageValue(registry, entry as never, hexToU8a('0x0500'))), 5);
    assert.equal(parseOptionalNumber(decodeStorageValue(registry, entry as never, new Uint8Array())), null);
  });
});

describe('commitment payload', function () {
  it('round-trips and rejects what is not ours', function () {
    const p: CommitmentPayload = {
      v: 1,
      sha256: 'c'.repeat(64),
      size: 1,
      loc: { kind: 'r2', account_id: 'acc', bucket: 'bkt', key: 'tournament/train/x.cpp', access_key_id: 'id', secret_access_key: 'sec' },
    };
    assert.deepEqual(decodePayload(encodePayload(p)), p);
    assert.deepEqual(decodePayload(new TextEncoder().encode(JSON.stringify(p))), p); // bare JSON too
    assert.throws(() => decodePayload(new TextEncoder().encode('hello')), /not a tournament commitment/);
    assert.throws(() => decodePayload(encodePayload({ ...p, sha256: 'xyz' })), /sha256/);
    assert.throws(() => decodePayload(encodePayload({ ...p, v: 2 as 1 })), /version/);
  });
});
