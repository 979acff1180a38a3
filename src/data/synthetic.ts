// Seeded synthetic tokens, identical on every machine: a 32-bit xoshiro128**
// generator seeded through splitmix32 (integer arithmetic only), and Zipf
// sampling by binary search in a cumulative table of 1/(rank+1) (s = 1): the
// table uses only IEEE divisions and additions in a fixed order, so it is
// bit-identical everywhere.
import type { TokenSet } from './tokens';

export class Rng {
  private s = new Uint32Array(4);

  constructor(seed: number) {
    let x = seed >>> 0;
    const hi = Math.floor(seed / 2 ** 32) >>> 0;
    for (let i = 0; i < 4; i++) {
      // splitmix32
      x = (x + 0x9e3779b9 + (i === 1 ? hi : 0)) >>> 0;
      let z = x;
      z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
      z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
      this.s[i] = (z ^ (z >>> 16)) >>> 0;
    }
    if ((this.s[0] | this.s[1] | this.s[2] | this.s[3]) === 0) this.s[0] = 1;
  }

  /** The next 32 random bits as an unsigned integer (xoshiro128**). */
  nextU32(): number {
    const s = this.s;
    const r = Math.imul(rotl(Math.imul(s[1], 5), 7), 9) >>> 0;
    const t = s[1] << 9;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return r;
  }

  /** A double in [0, 1) with 53 random bits. */
  nextFloat(): number {
    return ((this.nextU32() >>> 5) * 67108864 + (this.nextU32() >>> 6)) / 9007199254740992;
  }

  /** An integer in [0, n), unbiased (n <= 2^32). */
  below(n: number): number {
    if (n <= 0) throw new Error('below(n) needs n > 0');
    const limit = 2 ** 32 - (2 ** 32 % n);
    let v: number;
    do v = this.nextU32(); while (v >= limit);
    return v % n;
  }

  /** Fisher-Yates shuffle in place. */
  shuffle<T>(a: T[] | Int32Array): void {
    for (let i = a.length - 1; i > 0; i--) {
      const j = this.below(i + 1);
      const t = a[i];
      a[i] = a[j];
      a[j] = t;
    }
  }
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

export class Zipf {
  private cdf: Float64Array;

  constructor(readonly vocabSize: number) {
    if (!Number.isInteger(vocabSize) || vocabSize < 1) throw new Error('vocab size must be a positive integer');
    this.cdf = new Float64Array(vocabSize);
    let sum = 0;
    for (let k = 0; k < vocabSize; k++) {
      sum += 1 / (k + 1);
      this.cdf[k] = sum;
    }
  }

  /** A token id: rank r (0-based) with probability proportional to 1/(r+1). */
  sample(rng: Rng): number {
    const u = rng.nextFloat() * this.cdf[this.cdf.length - 1];
    let lo = 0;
    let hi = this.cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.cdf[mid] > u) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  }
}

interface SyntheticOptions {
  samples: number;
  seqLen: number;
  vocabSize: number;
  seed: number;
}

/** `samples` x `seqLen` Zipf-distributed ids in [0, vocabSize), fixed by the seed. */
export function syntheticTokens(o: SyntheticOptions): TokenSet {
  const rng = new Rng(o.seed);
  const zipf = new Zipf(o.vocabSize);
  const ids = new Int32Array(o.samples * o.seqLen);
  for (let i = 0; i < ids.length; i++) ids[i] = zipf.sample(rng);
  return { samples: o.samples, seqLen: o.seqLen, ids };
}
