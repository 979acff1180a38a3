// Timelock encryption to a drand quicknet round, in the byte format that
// subtensor's `tle` crate reads (the revision the chain pins): Boneh-Franklin
// "FullIdent" identity-based encryption on BLS12-381 (beacon signatures on G1,
// public key on G2) wrapping a 32-byte AES-256-GCM key, everything serialised
// the way arkworks' `serialize_compressed` writes it.
//
// Ciphertext layout (all integers little-endian):
//   header.u        96 bytes   G2 point r*P, compressed (zcash flags)
//   header.v        u64 len=32, then sigma XOR sha256(ser(e(Q_id, r*P_pub)))
//   header.w        u64 len=32, then key XOR sha256(sigma)
//   body            u64 len, then AESOutput:
//                      ciphertext  u64 len, AES-GCM output (data || 16-byte tag)
//                      nonce       u64 len=12, nonce
//   cipher_suite    u64 len=8, "AES_GCM_"
// with Q_id = hash_to_G1(sha256(round as 8 big-endian bytes)) under drand's DST,
// r = sha256(sigma || key) read big-endian mod the group order, and a pairing
// value serialised as the 12 base-field coefficients of Fp12 (c0.c0.c0,
// c0.c0.c1, c0.c1.c0, ... c1.c2.c1), each 48 bytes little-endian.
import type { bls12_381 as Bls12381 } from '@noble/curves/bls12-381';
import { bytesToNumberBE, concatBytes, equalBytes, numberToBytesLE } from '@noble/curves/utils';
import { sha256 } from '@noble/hashes/sha2';
import { gcm } from '@noble/ciphers/aes';
import { randomBytes } from 'crypto';

type G1Point = ReturnType<typeof Bls12381.G1.Point.fromHex>;
type G2Point = ReturnType<typeof Bls12381.G2.Point.fromHex>;
type Fp12 = ReturnType<typeof Bls12381.pairing>;

let curve: typeof Bls12381 | undefined;
/** The curve, loaded on first use: it takes a third of a second, and every CLI command imports this file through the validator. */
function bls(): typeof Bls12381 {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  return (curve ??= (require('@noble/curves/bls12-381') as typeof import('@noble/curves/bls12-381')).bls12_381);
}

const QUICKNET_DST = 'BLS_SIG_BLS12381G1_XMD:SHA-256_SSWU_RO_NUL_';
const CIPHER_SUITE = new TextEncoder().encode('AES_GCM_');
const G2_BYTES = 96;
const FP_BYTES = 48;
const NONCE_BYTES = 12;

export class TimelockError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TimelockError';
  }
}

/** The identity a drand quicknet round signs: sha256 of the round as a u64 big-endian. */
export function roundIdentity(round: bigint | number): Uint8Array {
  const r = BigInt(round);
  if (r < 0n || r >= 1n << 64n) throw new TimelockError(`round ${round} is not a u64`);
  const be = new Uint8Array(8);
  new DataView(be.buffer).setBigUint64(0, r, false);
  return sha256(be);
}

function identityPoint(round: bigint | number): G1Point {
  return bls().G1.hashToCurve(roundIdentity(round), { DST: QUICKNET_DST }) as unknown as G1Point;
}

/** arkworks' compressed serialisation of a pairing value (Fp12 has no flags). */
function serializeGt(e: Fp12): Uint8Array {
  const out = new Uint8Array(12 * FP_BYTES);
  let off = 0;
  for (const f6 of [e.c0, e.c1]) {
    for (const f2 of [f6.c0, f6.c1, f6.c2]) {
      for (const c of [f2.c0, f2.c1]) {
        out.set(numberToBytesLE(c, FP_BYTES), off);
        off += FP_BYTES;
      }
    }
  }
  return out;
}

function xor32(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(32);
  for (let i = 0; i < 32; i++) out[i] = a[i] ^ b[i];
  return out;
}

function u64le(n: number): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, BigInt(n), true);
  return b;
}

/** arkworks' Vec<u8>: u64 little-endian length, then the bytes. */
function vec(bytes: Uint8Array): Uint8Array {
  return concatBytes(u64le(bytes.length), bytes);
}

class Reader {
  private off = 0;
  constructor(private readonly buf: Uint8Array, private readonly what: string) {}
  take(n: number): Uint8Array {
    if (n < 0 || this.off + n > this.buf.length) throw new TimelockError(`${this.what}: truncated`);
    const out = this.buf.subarray(this.off, this.off + n);
    this.off += n;
    return out;
  }
  vec(maxLen = this.buf.length): Uint8Array {
    const b = this.take(8);
    const len = new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);
    if (len > BigInt(maxLen)) throw new TimelockError(`${this.what}: length ${len} out of range`);
    return this.take(Number(len));
  }
  end(): void {
    if (this.off !== this.buf.length) throw new TimelockError(`${this.what}: ${this.buf.length - this.off} trailing bytes`);
  }
}

/** h3: sha256(a || b) as a big-endian integer, reduced mod the scalar field order. */
function h3(sigma: Uint8Array, msg: Uint8Array): bigint {
  return bytesToNumberBE(sha256(concatBytes(sigma, msg))) % bls().params.r;
}

function parsePublicKey(publicKey: Uint8Array | string): G2Point {
  try {
    return bls().G2.Point.fromHex(publicKey);
  } catch (e) {
    throw new TimelockError(`bad drand public key: ${(e as Error).message}`);
  }
}

function parseSignature(signature: Uint8Array | string): G1Point {
  try {
    return bls().G1.Point.fromHex(signature);
  } catch (e) {
    throw new TimelockError(`bad drand signature: ${(e as Error).message}`);
  }
}

export interface EncryptOptions {
  /** Test hook: supplies random bytes (the AES key, sigma, the nonce). */
  random?: (n: number) => Uint8Array;
}

/** Encrypts `plaintext` so that it opens only with drand's signature of `round`. */
export function timelockEncrypt(
  plaintext: Uint8Array,
  round: bigint | number,
  publicKey: Uint8Array | string,
  opts: EncryptOptions = {},
): Uint8Array {
  const random = opts.random ?? ((n: number) => new Uint8Array(randomBytes(n)));
  const pPub = parsePublicKey(publicKey);
  const key = random(32);
  const sigma = random(32);
  const r = h3(sigma, key);
  if (r === 0n) throw new TimelockError('degenerate randomness; try again');
  const u = bls().G2.Point.BASE.multiply(r);
  const gId = bls().pairing(identityPoint(round), pPub.multiply(r));
  const v = xor32(sigma, sha256(serializeGt(gId)));
  const w = xor32(key, sha256(sigma));
  const nonce = random(NONCE_BYTES);
  const sealed = gcm(key, nonce).encrypt(plaintext);
  const body = concatBytes(vec(sealed), vec(nonce));
  return concatBytes(u.toBytes(true), vec(v), vec(w), vec(body), vec(CIPHER_SUITE));
}

interface ParsedCiphertext {
  u: G2Point;
  v: Uint8Array;
  w: Uint8Array;
  sealed: Uint8Array;
  nonce: Uint8Array;
}

function parseCiphertext(ct: Uint8Array): ParsedCiphertext {
  const rd = new Reader(ct, 'timelock ciphertext');
  let u: G2Point;
  try {
    u = bls().G2.Point.fromHex(rd.take(G2_BYTES));
  } catch (e) {
    throw new TimelockError(`timelock ciphertext: bad header point: ${(e as Error).message}`);
  }
  const v = rd.vec(32);
  const w = rd.vec(32);
  if (v.length !== 32 || w.length !== 32) throw new TimelockError('timelock ciphertext: header hashes must be 32 bytes');
  const body = rd.vec();
  const suite = rd.vec(64);
  rd.end();
  if (!equalBytes(suite, CIPHER_SUITE)) {
    throw new TimelockError(`timelock ciphertext: unsupported cipher suite ${JSON.stringify(Buffer.from(suite).toString('latin1'))}`);
  }
  const brd = new Reader(body, 'timelock body');
  const sealed = brd.vec();
  const nonce = brd.vec(64);
  brd.end();
  if (nonce.length !== NONCE_BYTES) throw new TimelockError('timelock body: nonce must be 12 bytes');
  return { u, v, w, sealed, nonce };
}

/** Opens a ciphertext with drand's signature of its round; throws TimelockError if it does not open. */
export function timelockDecrypt(ciphertext: Uint8Array, signature: Uint8Array | string): Uint8Array {
  const ct = parseCiphertext(ciphertext);
  const sig = parseSignature(signature);
  const sigma = xor32(ct.v, sha256(serializeGt(bls().pairing(sig, ct.u))));
  const key = xor32(ct.w, sha256(sigma));
  const r = h3(sigma, key);
  if (r === 0n || !bls().G2.Point.BASE.multiply(r).equals(ct.u)) {
    throw new TimelockError('timelock decryption failed: the signature does not match this ciphertext');
  }
  try {
    return gcm(key, ct.nonce).decrypt(ct.sealed);
  } catch {
    throw new TimelockError('timelock decryption failed: the message does not authenticate');
  }
}

/** Checks a beacon signature for `round` against the public key: e(sig, G2) == e(H(id), P_pub). */
export function verifyBeacon(round: bigint | number, signature: Uint8Array | string, publicKey: Uint8Array | string): boolean {
  const sig = parseSignature(signature);
  const lhs = bls().pairing(sig, bls().G2.Point.BASE);
  const rhs = bls().pairing(identityPoint(round), parsePublicKey(publicKey));
  return bls().fields.Fp12.eql(lhs, rhs);
}

export interface DrandParams {
  publicKey: string;
  genesisTime: number; // unix seconds
  period: number; // seconds
}

/** drand quicknet, the beacon subtensor follows. */
export const QUICKNET: DrandParams = {
  publicKey:
    '83cf0f2896adee7eb8b5f01fcad3912212c437e0073e911fb90022d3e760183c8c4b450b6a0a6c3ac6a5776a2d1064510d1fec758c921cc22b0e17e63aaf4bcb5ed66304de9cf809bd274ca73bab4af5a6e9c76a4bc09e76eae8991ef5ece45a',
  genesisTime: 1692803367,
  period: 3,
};

/** The round published about `seconds` from `nowMs`: floor((now - genesis + seconds) / period). */
export function revealRound(seconds: number, nowMs: number, params: DrandParams = QUICKNET): bigint {
  const now = Math.floor(nowMs / 1000);
  return BigInt(Math.max(1, Math.floor((now - params.genesisTime + Math.round(seconds)) / params.period)));
}

/** Unix time (seconds) at which `round` is published. */
export function roundTime(round: bigint | number, params: DrandParams = QUICKNET): number {
  return params.genesisTime + Number(round) * params.period;
}
