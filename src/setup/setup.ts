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
import { Manifest, describeFiles, describeSource, manifestProblems, readManifest, removeManifest } from './manifest';
import { SetupTarget, abandonTarget, finishTarget, openTarget, recoverInterrupted } from './staging';


export interface SetupResult {
  dir: string;
  skipped: boolean; // an existing complete setup was left alone
  manifest: Manifest;
}

/** The setup a command asks for. */
type WantedSetup =
  | { kind: 'preset'; preset: string }
  | { kind: 'hub'; model: string; weights: boolean; maxRowsPerDocument: number };

/**
 * Starts a setup of `want` in `dir`: finishes or cleans what interrupted runs
 * left, then either returns the complete setup already there (`keep`; `force`
 * off) or where to write the new one. A complete setup that is to be replaced
 * (`force`, or config only now with weights) is left untouched until the new
 * one is ready (see staging.ts). Throws when `dir` holds a different complete
 * setup and `force` is off.
 */
export function beginSetup(dir: string, want: WantedSetup, force: boolean): { keep: Manifest } | { target: SetupTarget } {
  recoverInterrupted(dir);
  let m: Manifest | null;
  try {
    m = readManifest(dir);
  } catch (e) {
    if (!force) throw e; // its hint says to use --force
    removeManifest(dir); // unreadable: nothing complete to keep
    m = null;
  }
  if (!m) return { target: openTarget(dir, null) };
  if (manifestProblems(dir, m).length > 0) {
    removeManifest(dir); // incomplete or damaged: nothing complete to keep; set up again in place
    return { target: openTarget(dir, null) };
  }
  if (force) return { target: openTarget(dir, m) };
  const have = m.source;
  if (have.kind === 'hub' && want.kind === 'hub' && have.model === want.model) {
    const cap = m.data.max_rows_per_document;
    if (cap !== want.maxRowsPerDocument) {
      throw new UserError(
        `${dir} holds a setup of ${describeSource(have)} whose data was packed ${cap === undefined ? 'without a cap on rows per document' : `with at most ${cap} rows per document`}, not ${want.maxRowsPerDocument}`,
        { hint: 'add --force to redo the data (downloaded files are kept), or ask for the cap it was made with' },
      );
    }
    if (have.weights || !want.weights) return { keep: m };
    return { target: openTarget(dir, m) }; // config only, now with weights: the config and tokenizer are reused
  }
  if (have.kind === 'preset' && want.kind === 'preset' && have.preset === want.preset) return { keep: m };
  throw new UserError(`${dir} already holds a complete benchmark setup of ${describeSource(have)}`, {
    hint: 'add --force to replace it, or choose another folder with --benchmark-dir',
  });
}

export function setupPreset(opts: { dir: string; preset: string; seed: number; force: boolean }): SetupResult {
  const preset = PRESETS[opts.preset];
  if (!preset) throw new UserError(`unknown preset "${opts.preset}"`, { hint: `known presets: ${PRESET_NAMES.join(', ')}` });
  const dir = opts.dir;
  const begun = beginSetup(dir, { kind: 'preset', preset: preset.name }, opts.force);
  if ('keep' in begun) return { dir, skipped: true, manifest: begun.keep };
  const t = begun.target;
  try {
    const known = {
      [CONFIG_PATH]: writeAtomic(path.join(t.work, CONFIG_PATH), [Buffer.from(configJson(preset.config))]),
      [DATA_PATH]: writeTokens(path.join(t.work, DATA_PATH), preset.tokens(opts.seed)),
    };
    const manifest: Manifest = {
      format: 1,
      created_at: new Date().toISOString(),
      source: { kind: 'preset', preset: preset.name },
      data: { path: DATA_PATH, samples: preset.samples, seq_len: preset.seqLen, seed: opts.seed, packing: 'synthetic Zipf(s=1) token ids' },
      files: describeFiles(t.work, [CONFIG_PATH, DATA_PATH], known),
    };
    finishTarget(t, manifest);
    return { dir, skipped: false, manifest };
  } catch (e) {
    abandonTarget(t);
    throw e;
  }
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
