// The real setup (issue 5): Qwen/Qwen2.5-7B's config, tokenizer and weights
// from the hub, and benchmark_num_samples rows of benchmark_seq_len FineWeb
// tokens, packed (see src/data/pack.ts for why not padded), chosen with
// benchmark_data_seed from the dataset's parquet files.
import * as fs from 'fs';
import * as path from 'path';
import type { Hparams } from '../config/hparams';
import { UserError } from '../errors';
import { readJsonFile } from '../util/json';
import { DEFAULT_MAX_ROWS_PER_DOCUMENT, Packer } from '../data/pack';
import { loadTokenizer } from '../data/tokenizer';
import { writeTokens } from '../data/tokens';
import { HubEnv, hubEnv } from './env';
import { formatBytes } from './format';
import { Hub, RemoteFile } from './hub';
import { Manifest, describeFiles } from './manifest';
import { Progress, info } from './progress';
import { SetupResult, beginSetup } from './setup';
import { SetupTarget, abandonTarget, finishTarget, reuseFile } from './staging';
import { CONFIG_PATH, DATA_PATH } from '../util/paths';
import { DEFAULT_DATASET_DIR, sampleDocuments } from './dataset';

/** Model files other than weights: fetched when the repo has them; the first two are required. */
const MODEL_META = ['config.json', 'tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'vocab.json', 'merges.txt', 'special_tokens_map.json'];
const REQUIRED_META = ['config.json', 'tokenizer.json'];

interface HubSetupOptions {
  dir: string;
  hparams: Hparams;
  force: boolean;
  configOnly: boolean;
  env?: HubEnv;
  modelRevision?: string;
  datasetRevision?: string;
  datasetDir?: string;
  /** the most rows' worth of tokens one document may fill (default DEFAULT_MAX_ROWS_PER_DOCUMENT) */
  maxRowsPerDocument?: number;
  /** for tests: no waiting between retries */
  noBackoff?: boolean;
}

function pickModelFiles(all: RemoteFile[], weights: boolean, name: string): RemoteFile[] {
  const byPath = new Map(all.map((f) => [f.path, f]));
  for (const r of REQUIRED_META) {
    if (!byPath.has(r)) throw new UserError(`model ${name} has no ${r}: is it a Hugging Face transformers model?`);
  }
  const chosen = MODEL_META.filter((p) => byPath.has(p)).map((p) => byPath.get(p)!);
  if (weights) {
    const st = all.filter((f) => !f.path.includes('/') && (f.path.endsWith('.safetensors') || f.path === 'model.safetensors.index.json'));
    if (!st.some((f) => f.path.endsWith('.safetensors'))) {
      throw new UserError(`model ${name} has no safetensors weights`, { hint: 'use --config-only to benchmark from a random initialisation' });
    }
    chosen.push(...st);
  }
  return chosen;
}

function checkDiskSpace(dir: string, need: number): void {
  let free: number;
  try {
    const s = fs.statfsSync(dir);
    free = s.bavail * s.bsize;
  } catch {
    return; // cannot tell: the writes will say ENOSPC if it comes to that
  }
  if (need > free) {
    throw new UserError(`not enough disk space in ${dir}: ${formatBytes(need)} still to download, ${formatBytes(free)} free`, {
      hint: 'free some space (or use --config-only, or another --benchmark-dir) and run again: finished files are kept',
    });
  }
}

function remaining(dir: string, files: RemoteFile[]): number {
  let n = 0;
  for (const f of files) {
    const dest = path.join(dir, f.path);
    if (fs.existsSync(dest) && fs.statSync(dest).size === f.size) continue;
    let have = 0;
    try {
      have = fs.statSync(`${dest}.partial`).size;
    } catch {
      // none
    }
    n += Math.max(0, f.size - have);
  }
  return n;
}

export async function setupFromHub(o: HubSetupOptions): Promise<SetupResult> {
  const maxRows = o.maxRowsPerDocument ?? DEFAULT_MAX_ROWS_PER_DOCUMENT;
  if (!Number.isInteger(maxRows) || maxRows < 1) {
    throw new UserError(`--max-rows-per-document must be a whole number of at least 1, not ${maxRows}`);
  }
  const begun = beginSetup(o.dir, { kind: 'hub', model: o.hparams.benchmark_model_name, weights: !o.configOnly, maxRowsPerDocument: maxRows }, o.force);
  if ('keep' in begun) return { dir: o.dir, skipped: true, manifest: begun.keep };
  try {
    const hub = new Hub(o.env ?? hubEnv());
    if (o.noBackoff) hub.backoffMs = () => 0;
    const manifest = await build(o, hub, begun.target, maxRows);
    finishTarget(begun.target, manifest);
    return { dir: o.dir, skipped: false, manifest };
  } catch (e) {
    abandonTarget(begun.target);
    throw e;
  }
}

/** Downloads the model and makes the data in `t.work`; returns the manifest to write there. */
async function build(o: HubSetupOptions, hub: Hub, t: SetupTarget, maxRows: number): Promise<Manifest> {
  const hp = o.hparams;
  const modelName = hp.benchmark_model_name;
  const datasetName = hp.benchmark_dataset_name;
  const modelDir = path.join(t.work, 'model');
  fs.mkdirSync(modelDir, { recursive: true });

  // 1. The model.
  const modelSha = await hub.resolveRevision('model', modelName, o.modelRevision ?? 'main');
  const files = pickModelFiles(await hub.listFiles('model', modelName, modelSha), !o.configOnly, modelName);
  const total = files.reduce((n, f) => n + f.size, 0);
  info(`model ${modelName} @ ${modelSha.slice(0, 12)}: ${files.length} files, ${formatBytes(total)}${o.configOnly ? ' (config only)' : ''}`);
  for (const f of files) reuseFile(t, `model/${f.path}`); // a replaced setup's files are checked, not downloaded again
  checkDiskSpace(modelDir, remaining(modelDir, files));
  const known: Record<string, string> = {};
  for (const f of files) known[`model/${f.path}`] = await hub.download('model', modelName, modelSha, f, path.join(modelDir, f.path));

  // 2. The data.
  const tokenizer = loadTokenizer(modelDir);
  const configFile = path.join(t.work, CONFIG_PATH);
  const config = readJsonFile<{ eos_token_id?: unknown }>(configFile);
  if (!config) throw new UserError(`${configFile} is missing`);
  const eos = Array.isArray(config.eos_token_id) ? config.eos_token_id[0] : config.eos_token_id;
  if (!Number.isInteger(eos)) throw new UserError(`${configFile}: no integer eos_token_id`);
  const datasetSha = await hub.resolveRevision('dataset', datasetName, o.datasetRevision ?? 'main');
  const datasetDir = o.datasetDir ?? DEFAULT_DATASET_DIR;
  const parquet = (await hub.listFiles('dataset', datasetName, datasetSha, datasetDir)).filter((f) => f.path.endsWith('.parquet'));
  if (parquet.length === 0) throw new UserError(`dataset ${datasetName}: no parquet files under ${datasetDir}`);
  info(`dataset ${datasetName} @ ${datasetSha.slice(0, 12)}: ${parquet.length} parquet files under ${datasetDir}; sampling with seed ${hp.benchmark_data_seed}, at most ${maxRows} row(s) per document`);
  const packer = new Packer(hp.benchmark_num_samples, hp.benchmark_seq_len, eos, maxRows);
  const progress = new Progress('  tokens', hp.benchmark_num_samples * hp.benchmark_seq_len, 'count');
  const sampled = await sampleDocuments({
    hub,
    repo: datasetName,
    revision: datasetSha,
    files: parquet,
    seed: hp.benchmark_data_seed,
    onDocument: (text) => {
      const more = packer.add(tokenizer.encode(text));
      progress.update(packer.tokens);
      return more;
    },
  });
  progress.done(`${packer.documents} documents packed, ${packer.truncated} cut at ${maxRows} row(s)`);
  if (!packer.full) {
    throw new UserError(
      `dataset ${datasetName}: only ${packer.tokens} tokens in ${datasetDir}, ${hp.benchmark_num_samples} x ${hp.benchmark_seq_len} needed`,
    );
  }
  known[DATA_PATH] = writeTokens(path.join(t.work, DATA_PATH), packer.result());

  return {
    format: 1,
    created_at: new Date().toISOString(),
    source: {
      kind: 'hub',
      endpoint: hub.endpoint,
      model: modelName,
      model_revision: modelSha,
      weights: !o.configOnly,
      dataset: datasetName,
      dataset_revision: datasetSha,
      dataset_files: sampled.filesRead,
    },
    data: {
      path: DATA_PATH,
      samples: hp.benchmark_num_samples,
      seq_len: hp.benchmark_seq_len,
      seed: hp.benchmark_data_seed,
      packing: `packed: ${packer.documents} documents (${packer.truncated} cut at ${maxRows} x ${hp.benchmark_seq_len} tokens), EOS ${eos} after each, cut every ${hp.benchmark_seq_len} tokens`,
      max_rows_per_document: maxRows,
    },
    files: describeFiles(t.work, [...files.map((f) => `model/${f.path}`), DATA_PATH], known),
  };
}
