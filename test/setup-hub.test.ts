import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { loadHparams, Hparams } from '../src/config/hparams';
import { UserError } from '../src/errors';
import { readTokens } from '../src/data/tokens';
import { loadTokenizer } from '../src/data/tokenizer';
import { hubEnv } from '../src/setup/env';
import { parseDotenv } from '../src/util/env';
import { setupFromHub } from '../src/setup/hub-setup';
import { DATA_PATH } from '../src/util/paths';
import { readManifest } from '../src/setup/manifest';
import { FakeHub } from './helpers/hub-server';
import { runCli } from './helpers/miner-cli';
import { DATASET, DOCS, EOS, MODEL, TOKENIZER_DIR, datasetRepo, modelRepo } from './helpers/hub-fixtures';

const ROOT = path.join(__dirname, '..', '..');

function hparams(over: Partial<Hparams> = {}): Hparams {
  return {
    ...loadHparams(path.join(ROOT, 'hparams', 'hparams.json')),
    benchmark_model_name: MODEL,
    benchmark_dataset_name: DATASET,
    benchmark_num_samples: 4,
    benchmark_seq_len: 8,
    ...over,
  };
}

/** Runs fn with stderr captured (progress output), returning what was written. */
async function quiet<T>(fn: () => Promise<T>): Promise<{ value?: T; error?: unknown; stderr: string }> {
  const orig = process.stderr.write.bind(process.stderr);
  let text = '';
  (process.stderr as any).write = (s: string | Uint8Array) => {
    text += s.toString();
    return true;
  };
  try {
    return { value: await fn(), stderr: text };
  } catch (error) {
    return { error, stderr: text };
  } finally {
    (process.stderr as any).write = orig;
  }
}

function expectUserError(r: { error?: unknown }, re: RegExp): UserError {
  assert.ok(r.error instanceof UserError, `expected a UserError, got ${r.error}`);
  const e = r.error as UserError;
  assert.match(`${e.message}\n${e.hint ?? ''}`, re);
  return e;
}

describe('setup-benchmark from a (loopback) hub', () => {
  let hub: FakeHub;
  let endpoint: string;
  let tmp: string;
  const run = (dir: string, o: { token?: string; configOnly?: boolean; force?: boolean; hp?: Partial<Hparams>; endpoint?: string } = {}) =>
    quiet(() =>
      setupFromHub({
        dir,
        hparams: hparams(o.hp),
        force: !!o.force,
        configOnly: !!o.configOnly,
        env: { endpoint: o.endpoint ?? endpoint, token: o.token ?? 'hf_good', tokenSource: 'the environment' },
        noBackoff: true,
      }),
    );

  beforeEach(async () => {
    hub = new FakeHub();
    hub.add(modelRepo());
    hub.add(await datasetRepo());
    endpoint = await hub.start();
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tt-hub-'));
  });
  afterEach(() => hub.stop());

  it('downloads config, tokenizer and weights, checks them, and writes packed tokens and a manifest', async () => {
    const dir = path.join(tmp, 'benchmark');
    const r = await run(dir);
    assert.equal(r.error, undefined, String(r.error));
    const repo = modelRepo();
    for (const f of ['config.json', 'generation_config.json', 'tokenizer.json', 'tokenizer_config.json', 'model.safetensors']) {
      assert.ok(fs.readFileSync(path.join(dir, 'model', f)).equals(repo.files[f]), f);
    }
    assert.ok(!fs.existsSync(path.join(dir, 'model', 'README.md')));
    assert.deepEqual(fs.readdirSync(path.join(dir, 'model')).filter((f) => f.includes('.partial')), []);
    const t = readTokens(path.join(dir, DATA_PATH));
    assert.deepEqual([t.samples, t.seqLen], [4, 8]);
    assert.ok(t.ids.every((v) => v >= 0 && v < 266));
    assert.ok(t.ids.includes(EOS), 'documents are separated by EOS');
    // Packing: the token stream is whole documents (as the tokenizer encodes them) each followed by EOS.
    const tok = loadTokenizer(TOKENIZER_DIR);
    const encoded = new Set(DOCS.map((d) => JSON.stringify(tok.encode(d))));
    const stream = Array.from(t.ids);
    const docs: number[][] = [[]];
    for (const id of stream) id === EOS ? docs.push([]) : docs[docs.length - 1].push(id);
    for (const d of docs.slice(0, -1)) assert.ok(encoded.has(JSON.stringify(d)), `a packed document ${JSON.stringify(d)} is a whole encoded document`);
    const m = readManifest(dir)!;
    assert.equal(m.source.kind, 'hub');
    if (m.source.kind === 'hub') {
      assert.equal(m.source.model_revision, hub.repos.get(`model:${MODEL}`)!.sha);
      assert.equal(m.source.dataset_revision, hub.repos.get(`dataset:${DATASET}`)!.sha);
      assert.ok(m.source.dataset_files.every((f) => f.startsWith('sample/10BT/')));
    }
    assert.deepEqual(m.files.map((f) => f.path).sort(), [
      'data/train.pt', 'model/config.json', 'model/generation_config.json', 'model/model.safetensors', 'model/tokenizer.json', 'model/tokenizer_config.json',
    ]);
    assert.match(r.stderr, /model\.safetensors: 293\.\d KiB done/);
    assert.ok(hub.log.every((l) => !l.url.startsWith('/api') || l.auth === 'Bearer hf_good'), 'the token goes with every API call');
  });

  it('chooses the same data for the same seed and other data for another seed', async () => {
    const a = path.join(tmp, 'a');
    const b = path.join(tmp, 'b');
    const c = path.join(tmp, 'c');
    await run(a, { configOnly: true });
    await run(b, { configOnly: true });
    await run(c, { configOnly: true, hp: { benchmark_data_seed: 7 } });
    const ta = readTokens(path.join(a, DATA_PATH)).ids;
    assert.deepEqual(readTokens(path.join(b, DATA_PATH)).ids, ta);
    assert.notDeepEqual(readTokens(path.join(c, DATA_PATH)).ids, ta);
  });

  it('--config-only leaves the weights out; a complete setup is left alone', async () => {
    const dir = path.join(tmp, 'benchmark');
    assert.equal((await run(dir, { configOnly: true })).error, undefined);
    assert.ok(!fs.existsSync(path.join(dir, 'model', 'model.safetensors')));
    const n = hub.log.length;
    const again = await run(dir, { configOnly: true });
    assert.equal(again.value!.skipped, true);
    assert.equal(hub.log.length, n, 'no requests for a complete setup');
    // Asking for the weights upgrades it.
    const full = await run(dir);
    assert.equal(full.value!.skipped, false);
    assert.ok(fs.existsSync(path.join(dir, 'model', 'model.safetensors')));
  });

  it('resumes a transfer cut mid-file with an HTTP range request', async () => {
    hub.cutAfter.set('model.safetensors', 100_000);
    const dir = path.join(tmp, 'benchmark');
    const r = await run(dir);
    assert.equal(r.error, undefined, String(r.error));
    assert.ok(fs.readFileSync(path.join(dir, 'model', 'model.safetensors')).equals(modelRepo().files['model.safetensors']));
    const ranges = hub.log.filter((l) => l.url.startsWith('/cdn/model/') && l.url.includes('model.safetensors')).map((l) => l.range);
    assert.ok(ranges.some((rg) => rg && /^bytes=\d+-$/.test(rg) && Number(/=(\d+)/.exec(rg)![1]) >= 100_000), `ranges: ${ranges}`);
    assert.match(r.stderr, /connection lost at \d+ bytes/);
  });

  it('resumes a .partial file left by an earlier run', async () => {
    const first = path.join(tmp, 'first');
    await run(first);
    const weights = modelRepo().files['model.safetensors'];
    const dir = path.join(tmp, 'benchmark');
    fs.mkdirSync(path.join(dir, 'model'), { recursive: true });
    const partial = path.join(dir, 'model', 'model.safetensors.partial');
    fs.writeFileSync(partial, weights.subarray(0, 123_456));
    // What the earlier run recorded: the file's ETag (the fake CDN's is its sha256) and size.
    const etag = hub.log.length && `"${readManifest(first)!.files.find((f) => f.path === 'model/model.safetensors')!.sha256}"`;
    fs.writeFileSync(`${partial}.json`, JSON.stringify({ etag, size: weights.length, revision: hub.repos.get(`model:${MODEL}`)!.sha }));
    hub.log.length = 0;
    const r = await run(dir);
    assert.equal(r.error, undefined, String(r.error));
    assert.ok(fs.readFileSync(path.join(dir, 'model', 'model.safetensors')).equals(weights));
    assert.ok(hub.log.some((l) => l.url.includes('model.safetensors') && l.range === 'bytes=123456-'));
    assert.match(r.stderr, /resuming at 123456/);
    assert.ok(!fs.existsSync(partial) && !fs.existsSync(`${partial}.json`));
  });

  it('rejects a download whose sha256 differs from the listing, keeping nothing of it', async () => {
    hub.corrupt.add('model.safetensors');
    const dir = path.join(tmp, 'benchmark');
    const r = await run(dir);
    expectUserError(r, /model\.safetensors: checksum mismatch \(sha256 [0-9a-f]{64}, the hub lists [0-9a-f]{64}\)/);
    assert.ok(!fs.existsSync(path.join(dir, 'model', 'model.safetensors')));
    assert.ok(!fs.existsSync(path.join(dir, 'model', 'model.safetensors.partial')));
    assert.equal(readManifest(dir), null);
  });

  it('checks small (non-LFS) files against their git blob sha1', async () => {
    hub.corrupt.add('tokenizer.json');
    const r = await run(path.join(tmp, 'benchmark'), { configOnly: true });
    expectUserError(r, /tokenizer\.json: checksum mismatch \(git sha1/);
  });

  describe('hub errors are clear', () => {
    beforeEach(async () => {
      await hub.stop();
      hub = new FakeHub();
      hub.add(modelRepo({ gated: true }));
      hub.add(await datasetRepo());
      endpoint = await hub.start();
    });
    it('gated repo without a token (401)', async () => {
      const r = await quiet(() => setupFromHub({ dir: path.join(tmp, 'b'), hparams: hparams(), force: false, configOnly: true, env: { endpoint }, noBackoff: true }));
      expectUserError(r, /tiny-qwen was not found .*or it is private or gated and needs a token \(HTTP 401\)[\s\S]*set HF_TOKEN/);
    });
    it('gated repo whose conditions the token has not accepted (403)', async () => {
      expectUserError(await run(path.join(tmp, 'b'), { token: 'hf_nogate' }), /forbidden \(HTTP 403, GatedRepo[\s\S]*accept its conditions at http:\/\/127\.0\.0\.1:\d+\/test-org\/tiny-qwen/);
    });
    it('bad token (401)', async () => {
      expectUserError(await run(path.join(tmp, 'b'), { token: 'hf_wrong' }), /rejected HF_TOKEN from the environment \(HTTP 401: Invalid credentials/);
    });
    it('missing repo (404)', async () => {
      expectUserError(await run(path.join(tmp, 'b'), { hp: { benchmark_model_name: 'test-org/nope' } }), /not found .*HTTP 404, RepoNotFound.*test-org\/nope/);
    });
    it('a token that is not a hub token', async () => {
      expectUserError(await run(path.join(tmp, 'b'), { token: 'abc' }), /does not look like a Hugging Face token/);
    });
    it('network down', async () => {
      const down = hub.url; // a loopback port with nothing listening any more
      await hub.stop();
      const r = await run(path.join(tmp, 'b'), { endpoint: down });
      expectUserError(r, /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)[\s\S]*check the network connection/);
      hub = new FakeHub();
      await hub.start();
    });
  });

  it('says so when the dataset has too few tokens', async () => {
    expectUserError(await run(path.join(tmp, 'b'), { configOnly: true, hp: { benchmark_num_samples: 100 } }), /only \d+ tokens in sample\/10BT, 100 x 8 needed/);
  });

  it('the CLI uses HF_ENDPOINT and HF_TOKEN from the environment', async () => {
    const hpFile = path.join(tmp, 'hparams.json');
    fs.writeFileSync(hpFile, JSON.stringify(hparams()));
    const dir = path.join(tmp, 'cli');
    const args = ['setup-benchmark', '--config-only', '--benchmark-dir', dir, '--hparams', hpFile, '--json'];
    const run = (token: string) => runCli(args, { cwd: tmp, env: { HF_ENDPOINT: endpoint, HF_TOKEN: token } });
    const r = await run('hf_good');
    assert.equal(r.code, 0, r.stderr);
    const m = JSON.parse(r.stdout);
    assert.equal(m.source.endpoint, endpoint);
    assert.equal(m.skipped, false);
    assert.match(r.stderr, /model test-org\/tiny-qwen @ [0-9a-f]{12}: 4 files/);
    fs.rmSync(dir, { recursive: true });
    const bad = await run('hf_wrong');
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error: .*rejected HF_TOKEN from the environment[\s\S]*hint: /m);
    assert.doesNotMatch(bad.stderr, /at .*\.js:\d+/, 'no stack trace for a user error');
  });

  it('reads HF_TOKEN and HF_ENDPOINT from the environment first, then .env', () => {
    const dotenv = path.join(tmp, '.env');
    fs.writeFileSync(dotenv, '# comment\nexport HF_TOKEN="hf_fromfile"\nHF_ENDPOINT=http://127.0.0.1:1234/ # local\n');
    assert.deepEqual(parseDotenv(fs.readFileSync(dotenv, 'utf8')), { HF_TOKEN: 'hf_fromfile', HF_ENDPOINT: 'http://127.0.0.1:1234/' });
    assert.deepEqual(hubEnv({}, dotenv), { endpoint: 'http://127.0.0.1:1234', token: 'hf_fromfile', tokenSource: dotenv });
    assert.deepEqual(hubEnv({ HF_TOKEN: 'hf_env' }, dotenv).token, 'hf_env');
    assert.equal(hubEnv({}, path.join(tmp, 'none')).endpoint, 'https://huggingface.co');
  });
});
