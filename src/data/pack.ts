// Packing documents into fixed-length rows: documents are concatenated with the
// EOS token after each one and the stream is cut every seq_len tokens, so every
// token of every row is real text (or a document boundary) that the model must
// train on. Padding (the seed's choice) would make a share of each batch pad
// tokens whose loss is masked or trivially predictable: free work a miner could
// skip while still being credited for the tokens. Documents may straddle rows;
// the last, incomplete row is dropped.
import type { TokenSet } from './tokens';

export class Packer {
  private readonly ids: Int32Array;
  private filled = 0;
  documents = 0;

  constructor(readonly samples: number, readonly seqLen: number, readonly eosId: number) {
    this.ids = new Int32Array(samples * seqLen);
  }

  get full(): boolean {
    return this.filled === this.ids.length;
  }

  get tokens(): number {
    return this.filled;
  }

  /** Appends one document and its EOS; returns false once the set is full. */
  add(doc: ArrayLike<number>): boolean {
    if (this.full) return false;
    this.documents++;
    const n = Math.min(doc.length, this.ids.length - this.filled);
    for (let i = 0; i < n; i++) this.ids[this.filled++] = doc[i];
    if (!this.full) this.ids[this.filled++] = this.eosId;
    return !this.full;
  }

  result(): TokenSet {
    const rows = Math.floor(this.filled / this.seqLen);
    if (rows < 1) throw new Error('not enough tokens for one row');
    return { samples: rows, seqLen: this.seqLen, ids: this.ids.subarray(0, rows * this.seqLen) };
  }
}
