// Choosing documents from a hub dataset stored as parquet (FineWeb's layout),
// reading only what is needed through HTTP range requests: a file's footer,
// then the "text" column of one row group at a time.
//
// The choice is fixed by the seed and the dataset revision: the parquet files
// are visited in a seeded order, the row groups of each in a seeded order, and
// the rows of each group in a seeded order, until the consumer has enough.
import { UserError } from '../errors';
import { Rng } from '../data/synthetic';
import type { Hub, RemoteFile } from './hub';

/** The folder of the dataset repo whose parquet files are sampled (FineWeb's 10B-token sample). */
export const DEFAULT_DATASET_DIR = 'sample/10BT';

// hyparquet is ESM-only; load it with a real dynamic import that tsc's CommonJS output keeps.
export const importEsm = new Function('specifier', 'return import(specifier)') as <T>(s: string) => Promise<T>;

interface SampleResult {
  filesRead: string[];
  documents: number;
}

export async function sampleDocuments(o: {
  hub: Hub;
  repo: string;
  revision: string;
  /** The parquet files to sample from (the caller lists them and checks there are some). */
  files: RemoteFile[];
  seed: number;
  column?: string;
  /** Receives each chosen document; returns false when it wants no more. */
  onDocument: (text: string) => boolean;
}): Promise<SampleResult> {
  const hyparquet = await importEsm<typeof import('hyparquet')>('hyparquet');
  const { compressors } = await importEsm<typeof import('hyparquet-compressors')>('hyparquet-compressors');
  const column = o.column ?? 'text';
  const rng = new Rng(o.seed);
  const order = o.files.slice();
  rng.shuffle(order);
  const filesRead: string[] = [];
  let documents = 0;
  for (const f of order) {
    filesRead.push(f.path);
    const { url } = await o.hub.fileInfo('dataset', o.repo, o.revision, f.path);
    const what = `dataset ${o.repo}: ${f.path}`;
    const file = hyparquet.cachedAsyncBuffer({
      byteLength: f.size,
      slice: async (start: number, end?: number) => {
        try {
          return await o.hub.range(url, start, end ?? f.size);
        } catch (e) {
          throw o.hub.explain(e, 'dataset', o.repo, what);
        }
      },
    });
    let metadata: Awaited<ReturnType<typeof hyparquet.parquetMetadataAsync>>;
    try {
      metadata = await hyparquet.parquetMetadataAsync(file);
    } catch (e) {
      if (e instanceof UserError) throw e;
      throw new UserError(`${what}: not a readable parquet file (${(e as Error).message})`);
    }
    const names = metadata.schema.map((s) => s.name);
    if (!names.includes(column)) throw new UserError(`${what}: no "${column}" column (columns: ${names.slice(1).join(', ')})`);
    const starts: number[] = [];
    let at = 0;
    for (const g of metadata.row_groups) {
      starts.push(at);
      at += Number(g.num_rows);
    }
    const groups = metadata.row_groups.map((_, i) => i);
    rng.shuffle(groups);
    for (const g of groups) {
      const rowStart = starts[g];
      const rowEnd = rowStart + Number(metadata.row_groups[g].num_rows);
      let rows: Record<string, unknown>[];
      try {
        rows = await hyparquet.parquetReadObjects({ file, metadata, columns: [column], rowStart, rowEnd, compressors });
      } catch (e) {
        if (e instanceof UserError) throw e;
        throw new UserError(`${what}: cannot read row group ${g} (${(e as Error).message})`);
      }
      const idx = rows.map((_, i) => i);
      rng.shuffle(idx);
      for (const i of idx) {
        const text = rows[i][column];
        if (typeof text !== 'string' || text.length === 0) continue;
        documents++;
        if (!o.onDocument(text)) return { filesRead, documents };
      }
    }
  }
  return { filesRead, documents };
}
