// Where the installation is. Commands find the project's own files (hparams,
// the baseline, the built engine) here rather than in the working directory,
// so they work wherever they are run from.
import * as path from 'path';

/** The checkout or installed package: compiled files sit in dist/src/<room>/. */
export const PROJECT_ROOT = path.resolve(__dirname, '..', '..', '..');

/** The tournament settings file shipped with the installation. */
export const HPARAMS_FILE = path.join(PROJECT_ROOT, 'hparams', 'hparams.json');

/** Where setup-benchmark writes and local-bench reads, unless told otherwise. */
export const DEFAULT_BENCHMARK_DIR = path.join(PROJECT_ROOT, 'benchmark');
