// setup-benchmark: what it writes and when it leaves an existing setup alone.
//
// Layout under the benchmark folder (default benchmark/ in the installation; the
// paths are CONFIG_PATH and DATA_PATH in src/util/paths.ts):
//   model/config.json            Hugging Face Qwen2 config (+ tokenizer and weights for the real model)
//   data/train.pt                (samples, seq_len) int64 tokens, torch.save format (src/data/tokens.ts)
//   manifest.json                written last: files, sizes, sha256, source
import * as path from 'path';
import { UserError } from '../errors';
import { writeAtomic } from '../util/atomic';
import { CONFIG_PATH, DATA_PATH } from '../util/paths';
import { writeTokens } from '../data/tokens';
import { PRESETS, PRESET_NAMES, configJson } from './presets';
import { formatBytes } from './format';
import {
  Manifest,
  describeFiles,
  describeSource,
  manifestProblems,
  readManifest,
  removeManifest,
  writeManifest,
} from './manifest';


export interface SetupResult {
  dir: string;
  skipped: boolean; // an existing complete setup was left alone
  manifest: Manifest;
}

/** The setup a command asks for. */
type WantedSetup = { kind: 'preset'; preset: string } | { kind: 'hub'; model: string; weights: boolean };

/**
 * Returns the existing manifest when `dir` already holds a complete setup of the
 * wanted kind (and `force` is off); throws when it holds a different complete
 * setup; returns null when there is nothing complete to keep.
 */
export function existingSetup(dir: string, want: WantedSetup, force: boolean): Manifest | null {
  const m = readManifest(dir);
  if (!m) return null;
  if (force) {
    removeManifest(dir);
    return null;
  }
  if (manifestProblems(dir, m).length > 0) {
    removeManifest(dir); // incomplete or damaged: set up again
    return null;
  }
  const have = m.source;
  if (have.kind === 'hub' && want.kind === 'hub' && have.model === want.model) {
    if (have.weights || !want.weights) return m;
    removeManifest(dir); // config only, now with weights: the files already there are checked and kept
    return null;
  }
  if (have.kind === 'preset' && want.kind === 'preset' && have.preset === want.preset) return m;
  throw new UserError(`${dir} already holds a complete benchmark setup of ${describeSource(have)}`, {
    hint: 'add --force to replace it, or choose another folder with --benchmark-dir',
  });
}

export function setupPreset(opts: { dir: string; preset: string; seed: number; force: boolean }): SetupResult {
  const preset = PRESETS[opts.preset];
  if (!preset) throw new UserError(`unknown preset "${opts.preset}"`, { hint: `known presets: ${PRESET_NAMES.join(', ')}` });
  const dir = opts.dir;
  const existing = existingSetup(dir, { kind: 'preset', preset: preset.name }, opts.force);
  if (existing) return { dir, skipped: true, manifest: existing };
  const known = {
    [CONFIG_PATH]: writeAtomic(path.join(dir, CONFIG_PATH), [Buffer.from(configJson(preset.config))]),
    [DATA_PATH]: writeTokens(path.join(dir, DATA_PATH), preset.tokens(opts.seed)),
  };
  const manifest: Manifest = {
    format: 1,
    created_at: new Date().toISOString(),
    source: { kind: 'preset', preset: preset.name },
    data: { path: DATA_PATH, samples: preset.samples, seq_len: preset.seqLen, seed: opts.seed, packing: 'synthetic Zipf(s=1) token ids' },
    files: describeFiles(dir, [CONFIG_PATH, DATA_PATH], known),
  };
  writeManifest(dir, manifest);
  return { dir, skipped: false, manifest };
}

/** Human summary of a setup for stdout. */
export function formatResult(r: SetupResult): string {
  const m = r.manifest;
  const lines = [
    r.skipped
      ? `${r.dir}: already set up (${describeSource(m.source)}, ${m.created_at}); left alone. Use --force to redo it.`
      : `${r.dir}: set up ${describeSource(m.source)}`,
  ];
  for (const f of m.files) lines.push(`  ${f.path.padEnd(40)} ${formatBytes(f.bytes).padStart(10)}  sha256 ${f.sha256.slice(0, 16)}`);
  lines.push(`  data: ${m.data.samples} samples x ${m.data.seq_len} tokens (${m.data.packing}), seed ${m.data.seed}`);
  return lines.join('\n');
}
