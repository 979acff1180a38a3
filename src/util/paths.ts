// Where the installation is. Commands find the project's own files (hparams,
// the baseline, the built engine) here rather than in the working directory,
// so they work wherever they are run from.
import * as os from 'os';
import * as path from 'path';

/** The checkout or installed package: compiled files sit in dist/src/<room>/. */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..', '..');

/** The tournament settings file shipped with the installation. */
export const HPARAMS_FILE = path.join(PROJECT_ROOT, 'hparams', 'hparams.json');

/** Where setup-benchmark writes and local-bench reads, unless told otherwise. */
export const DEFAULT_BENCHMARK_DIR = path.join(PROJECT_ROOT, 'benchmark');

// The benchmark folder's layout, relative to it: setup-benchmark writes these,
// the harness reads them.
/** Hugging Face Qwen2 config.json (+ tokenizer and weights beside it for the real model) */
export const CONFIG_PATH = 'model/config.json';
/** (samples, seq_len) int64 tokens in torch.save format */
export const DATA_PATH = 'data/train.pt';

/** Scratch for runs and compiled plugins of local-bench, calibrate and the miner's compile check, unless told otherwise. */
export function defaultWorkDir(): string {
  return path.join(os.tmpdir(), `tournament-${process.getuid?.() ?? 'user'}`);
}
