import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { readTokens } from '../src/data/tokens';
import { setupPreset } from '../src/setup/setup';
import { CONFIG_PATH, DATA_PATH } from '../src/util/paths';
import { readManifest, sha256File, writeManifest } from '../src/setup/manifest';
import { UserError } from '../src/errors';
import { parseQwen2Config } from '../src/engine/config';
import { removeTmpDir, tmpDir } from './helpers/tmp';

const ROOT = path.join(__dirname, '..', '..');
const BIN = path.join(ROOT, 'bin', 'tournament');
const HPARAMS = path.join(ROOT, 'hparams', 'hparams.json');

function cli(args: string[]) {
  return spawnSync(process.execPath, [BIN, ...args, '--hparams', HPARAMS], { encoding: 'utf8' });
}

describe('setup-benchmark --preset (tiny, 7b-shape)', () => {
  let tmp: string;
  let dir: string;
  beforeEach(() => {
    tmp = tmpDir('setup');
    dir = path.join(tmp, 'benchmark');
  });
  afterEach(() => removeTmpDir(tmp));

  it('writes a Qwen2 config, 256 x 128 Zipf tokens and a manifest, with no network', () => {
    const r = cli(['setup-benchmark', '--preset', 'tiny', '--benchmark-dir', dir]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /set up preset tiny/);
    const config = JSON.parse(fs.readFileSync(path.join(dir, CONFIG_PATH), 'utf8'));
    assert.deepEqual(config.architectures, ['Qwen2ForCausalLM']);
    assert.equal(config.model_type, 'qwen2');
    assert.deepEqual(
      [config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.vocab_size],
      [128, 352, 2, 4, 2, 2048],
    );
    assert.equal(config.rope_theta, 1e6);
    assert.equal(config.rms_norm_eps, 1e-6);
    assert.equal(config.tie_word_embeddings, false);
    assert.equal(config.torch_dtype, 'bfloat16');
    assert.ok(config.bos_token_id < 2048 && config.eos_token_id < 2048);
    const t = readTokens(path.join(dir, DATA_PATH));
    assert.deepEqual([t.samples, t.seqLen], [256, 128]);
    assert.ok(t.ids.every((v) => v >= 0 && v < 2048));
    const m = readManifest(dir)!;
    assert.deepEqual(m.source, { kind: 'preset', preset: 'tiny' });
    assert.equal(m.data.seed, 42);
    for (const f of m.files) {
      assert.equal(f.sha256, sha256File(path.join(dir, f.path)), f.path);
      assert.equal(f.bytes, fs.statSync(path.join(dir, f.path)).size);
    }
  });

  it('leaves a complete setup alone, redoes it with --force, byte for byte the same', () => {
    setupPreset({ dir, preset: 'tiny', seed: 42, force: false });
    const first = readManifest(dir)!;
    const again = cli(['setup-benchmark', '--preset', 'tiny', '--benchmark-dir', dir]);
    assert.equal(again.status, 0, again.stderr);
    assert.match(again.stdout, /already set up \(preset tiny/);
    assert.equal(readManifest(dir)!.created_at, first.created_at);
    const forced = cli(['setup-benchmark', '--preset', 'tiny', '--benchmark-dir', dir, '--force', '--json']);
    assert.equal(forced.status, 0, forced.stderr);
    const m = JSON.parse(forced.stdout);
    assert.equal(m.skipped, false);
    assert.deepEqual(m.files, first.files, 'same seed, same bytes');
    assert.deepEqual(fs.readdirSync(dir).sort(), ['data', 'manifest.json', 'model'], 'no staging folder left');
  });

  it('removes the temp files a killed run left (their writer is gone), on the next start', () => {
    setupPreset({ dir, preset: 'tiny', seed: 42, force: false });
    const dead = spawnSync(process.execPath, ['-e', '']).pid; // exited: no process has this pid now
    const stale = path.join(dir, DATA_PATH + `.tmp-${dead}-abcdef12`);
    fs.writeFileSync(stale, Buffer.alloc(4096));
    const r = cli(['setup-benchmark', '--preset', 'tiny', '--benchmark-dir', dir]);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!fs.existsSync(stale));
    assert.match(r.stderr, /removed 1 temporary file\(s\) \(4\.0 KiB\) left by interrupted runs/);
  });

  it('treats a setup without manifest, or with a changed file, as incomplete and redoes it', () => {
    setupPreset({ dir, preset: 'tiny', seed: 42, force: false });
    const data = path.join(dir, DATA_PATH);
    fs.truncateSync(data, 100);
    assert.equal(setupPreset({ dir, preset: 'tiny', seed: 42, force: false }).skipped, false);
    assert.equal(readTokens(data).samples, 256);
    fs.rmSync(path.join(dir, 'manifest.json'));
    assert.equal(setupPreset({ dir, preset: 'tiny', seed: 42, force: false }).skipped, false);
    assert.ok(readManifest(dir));
  });

  it('a damaged manifest: says to use --force, and --force redoes the setup', () => {
    setupPreset({ dir, preset: 'tiny', seed: 42, force: false });
    fs.writeFileSync(path.join(dir, 'manifest.json'), '{"format": 1, "files": [');
    assert.throws(() => setupPreset({ dir, preset: 'tiny', seed: 42, force: false }), (e: unknown) => e instanceof UserError && /manifest\.json/.test(e.message) && /--force/.test(e.hint ?? ''));
    assert.equal(setupPreset({ dir, preset: 'tiny', seed: 42, force: true }).skipped, false);
    assert.deepEqual(readManifest(dir)!.source, { kind: 'preset', preset: 'tiny' });
  });

  it('refuses to replace a different complete setup without --force', () => {
    setupPreset({ dir, preset: 'tiny', seed: 42, force: false });
    const m = readManifest(dir)!;
    writeManifest(dir, { ...m, source: { kind: 'preset', preset: 'other' } });
    assert.throws(() => setupPreset({ dir, preset: 'tiny', seed: 42, force: false }), (e: unknown) => e instanceof UserError && /already holds a complete benchmark setup of preset other/.test(e.message));
    assert.equal(setupPreset({ dir, preset: 'tiny', seed: 42, force: true }).skipped, false);
  });

  it('the data follows the hparams seed', () => {
    const a = setupPreset({ dir, preset: 'tiny', seed: 42, force: false }).manifest.files[1].sha256;
    const b = setupPreset({ dir, preset: 'tiny', seed: 7, force: true }).manifest.files[1].sha256;
    assert.notEqual(a, b);
  });

  it('--preset 7b-shape: Qwen2.5-7B\'s config from the registry and 256 x 1024 tokens, as the GPU scripts use it', () => {
    const r = cli(['setup-benchmark', '--preset', '7b-shape', '--benchmark-dir', dir]);
    assert.equal(r.status, 0, r.stderr);
    const config = parseQwen2Config(JSON.parse(fs.readFileSync(path.join(dir, CONFIG_PATH), 'utf8')), 'config.json');
    // Qwen/Qwen2.5-7B's published shape
    assert.deepEqual(
      [config.hidden_size, config.intermediate_size, config.num_hidden_layers, config.num_attention_heads, config.num_key_value_heads, config.vocab_size],
      [3584, 18944, 28, 28, 4, 152064],
    );
    const t = readTokens(path.join(dir, DATA_PATH));
    assert.deepEqual([t.samples, t.seqLen], [256, 1024]);
    assert.ok(t.ids.some((v) => v >= 2048) && t.ids.every((v) => v >= 0 && v < 152064), 'ids span the real vocabulary');
    assert.deepEqual(readManifest(dir)!.source, { kind: 'preset', preset: '7b-shape' });
  });

  it('an unknown preset is a usage error', () => {
    const r = cli(['setup-benchmark', '--preset', 'huge', '--benchmark-dir', dir]);
    assert.notEqual(r.status, 0);
    assert.match(r.stderr, /Invalid values|choices/i);
  });
});

