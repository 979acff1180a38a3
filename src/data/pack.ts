// Packing documents into fixed-length rows: documents are concatenated with the
// EOS token after each one and the stream is cut every seq_len tokens, so every
// token of every row is real text (or a document boundary) that the model must
// train on. Padding (the seed's choice) would make a share of each batch pad
// tokens whose loss is masked or trivially predictable: free work a miner could
// skip while still being credited for the tokens. Documents may straddle rows;
// the last, incomplete row is dropped.
//
// One long document could otherwise fill many rows of a small sample (a 100k-token
// page would be 100 rows of 1024): a document keeps at most maxRowsPerDocument
// rows' worth of tokens (its first maxRowsPerDocument x seq_len), then its EOS.
// docs/data.md says why the default is 1.
import type { TokenSet } from './tokens';

/** The default cap on rows per document: each document contributes what the seed's truncation keeps. */
export const DEFAULT_MAX_ROWS_PER_DOCUMENT = 1;

export class Packer {
  private readonly ids: Int32Array;
  private readonly maxDocTokens: number;
  private filled = 0;
  documents = 0;
  /** documents cut at the cap */
  truncated = 0;

  constructor(readonly samples: number, readonly seqLen: number, readonly eosId: number, readonly maxRowsPerDocument = DEFAULT_MAX_ROWS_PER_DOCUMENT) {
    if (!Number.isInteger(maxRowsPerDocument) || maxRowsPerDocument < 1) throw new RangeError(`maxRowsPerDocument must be a positive integer, not ${maxRowsPerDocument}`);
    this.ids = new Int32Array(samples * seqLen);
    this.maxDocTokens = maxRowsPerDocument * seqLen;
  }

  get full(): boolean {
    return this.filled === this.ids.length;
  }

  get tokens(): number {
    return this.filled;
  }

  /** Appends one document (its first maxRowsPerDocument x seq_len tokens) and its EOS; returns false once the set is full. */
  add(doc: ArrayLike<number>): boolean {
    if (this.full) return false;
    this.documents++;
    if (doc.length > this.maxDocTokens) this.truncated++;
    const n = Math.min(doc.length, this.maxDocTokens, this.ids.length - this.filled);
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
