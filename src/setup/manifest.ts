// benchmark/manifest.json: written last by setup-benchmark, so a benchmark
// folder without it is known to be incomplete. It lists every file written
// (path relative to the benchmark folder, size, sha256) and where it came from.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { writeAtomic } from '../util/atomic';
import { readJsonFile } from '../util/json';

export const MANIFEST = 'manifest.json';

interface ManifestFile {
  path: string;
  bytes: number;
  sha256: string;
}

type ManifestSource =
  | { kind: 'preset'; preset: string }
  | {
      kind: 'hub';
      endpoint: string;
      model: string;
      model_revision: string;
      weights: boolean;
      dataset: string;
      dataset_revision: string;
      dataset_files: string[];
    };

export interface Manifest {
  format: 1;
  created_at: string;
  source: ManifestSource;
  data: {
    path: string;
    samples: number;
    seq_len: number;
    seed: number;
    packing: string;
    /** real data: the most rows' worth of tokens one document may fill (absent in setups made before the cap, and for synthetic data) */
    max_rows_per_document?: number;
  };
  files: ManifestFile[];
}

export function sha256File(file: string): string {
  const h = crypto.createHash('sha256');
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.alloc(1 << 20);
    let n: number;
    while ((n = fs.readSync(fd, buf, 0, buf.length, null)) > 0) h.update(buf.subarray(0, n));
  } finally {
    fs.closeSync(fd);
  }
  return h.digest('hex');
}

/** Describes files under `dir` for the manifest, hashing those without a known sha256. */
export function describeFiles(dir: string, rel: string[], known: Record<string, string> = {}): ManifestFile[] {
  return rel.map((p) => {
    const abs = path.join(dir, p);
    return { path: p, bytes: fs.statSync(abs).size, sha256: known[p] ?? sha256File(abs) };
  });
}

export function writeManifest(dir: string, m: Manifest): void {
  writeAtomic(path.join(dir, MANIFEST), [Buffer.from(JSON.stringify(m, null, 2) + '\n')]);
}

export function removeManifest(dir: string): void {
  fs.rmSync(path.join(dir, MANIFEST), { force: true });
}

/** The manifest, or null when there is none. A damaged manifest is an error. */
export function readManifest(dir: string): Manifest | null {
  const file = path.join(dir, MANIFEST);
  const hint = 'run setup-benchmark again with --force';
  const m = readJsonFile<Manifest>(file, hint);
  if (m && (m.format !== 1 || !Array.isArray(m.files) || !m.source)) throw new UserError(`${file} is damaged (unexpected content)`, { hint });
  return m;
}

/** What is wrong with the files a manifest lists (sizes only; hashing 15 GB each time would be slow). */
export function manifestProblems(dir: string, m: Manifest): string[] {
  const problems: string[] = [];
  for (const f of m.files) {
    const abs = path.join(dir, f.path);
    let size: number;
    try {
      size = fs.statSync(abs).size;
    } catch {
      problems.push(`${f.path} is missing`);
      continue;
    }
    if (size !== f.bytes) problems.push(`${f.path} has ${size} bytes, the manifest says ${f.bytes}`);
  }
  return problems;
}

export function describeSource(s: ManifestSource): string {
  return s.kind === 'preset'
    ? `preset ${s.preset}`
    : `${s.model}@${s.model_revision.slice(0, 12)}${s.weights ? '' : ' (config only)'} + ${s.dataset}@${s.dataset_revision.slice(0, 12)}`;
}
