import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { loadHparams, Hparams } from '../src/config/hparams';
import { UserError } from '../src/errors';
import { readTokens } from '../src/data/tokens';
import { loadTokenizer } from '../src/data/tokenizer';
import { hubEnv } from '../src/setup/env';
import { parseDotenv } from '../src/util/env';
import { setupFromHub } from '../src/setup/hub-setup';
import { DATA_PATH } from '../src/util/paths';
import { Manifest, readManifest, writeManifest } from '../src/setup/manifest';
import { FakeHub } from './helpers/hub-server';
import { runCli } from './helpers/miner-cli';
import { deadServer } from './helpers/dead-server';
import { removeTmpDir, tmpDir } from './helpers/tmp';
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
  const run = (
    dir: string,
    o: { token?: string | null; configOnly?: boolean; force?: boolean; hp?: Partial<Hparams>; endpoint?: string; maxRows?: number } = {},
  ) =>
    quiet(() =>
      setupFromHub({
        dir,
        hparams: hparams(o.hp),
        force: !!o.force,
        configOnly: !!o.configOnly,
        env: o.token === null ? { endpoint: o.endpoint ?? endpoint } : { endpoint: o.endpoint ?? endpoint, token: o.token ?? 'hf_good', tokenSource: 'the environment' },
        maxRowsPerDocument: o.maxRows,
        noBackoff: true,
      }),
    );

  beforeEach(async () => {
    hub = new FakeHub();
    hub.add(modelRepo());
    hub.add(await datasetRepo());
    endpoint = await hub.start();
    tmp = tmpDir('hub');
  });
  afterEach(async () => {
    await hub.stop();
    removeTmpDir(tmp);
  });

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
    it('gated repo without a token (401): says it is gated, where to accept the licence, and to set HF_TOKEN', async () => {
      const e = expectUserError(await run(path.join(tmp, 'b'), { token: null, configOnly: true }), /model test-org\/tiny-qwen is gated: .*\(HTTP 401, GatedRepo\)/);
      assert.doesNotMatch(e.message, /not found/);
      assert.match(e.hint!, /accept the licence at http:\/\/127\.0\.0\.1:\d+\/test-org\/tiny-qwen, then set HF_TOKEN/);
    });
    it('gated repo whose conditions the token has not accepted (403)', async () => {
      const e = expectUserError(await run(path.join(tmp, 'b'), { token: 'hf_nogate' }), /is gated: .*\(HTTP 403, GatedRepo\)/);
      assert.match(e.hint!, /accept the licence at http:\/\/127\.0\.0\.1:\d+\/test-org\/tiny-qwen while logged in as the account of HF_TOKEN \(from the environment\)/);
    });
    it('a repo the hub will not name without a token (401, RepoNotFound): private, gated or missing, set HF_TOKEN', async () => {
      const e = expectUserError(await run(path.join(tmp, 'b'), { token: null, hp: { benchmark_model_name: 'test-org/nope' } }), /test-org\/nope needs a token: it is private or gated, or it does not exist \(HTTP 401, RepoNotFound/);
      assert.match(e.hint!, /set HF_TOKEN/);
    });
    it('bad token (401)', async () => {
      expectUserError(await run(path.join(tmp, 'b'), { token: 'hf_wrong' }), /rejected HF_TOKEN from the environment \(HTTP 401: Invalid credentials/);
    });
    it('missing repo with a token (404): not found, not gated', async () => {
      const e = expectUserError(await run(path.join(tmp, 'b'), { hp: { benchmark_model_name: 'test-org/nope' } }), /not found .*HTTP 404, RepoNotFound.*test-org\/nope/);
      assert.doesNotMatch(`${e.message} ${e.hint}`, /gated|licence/);
    });
    it('a token that is not a hub token', async () => {
      expectUserError(await run(path.join(tmp, 'b'), { token: 'abc' }), /does not look like a Hugging Face token/);
    });
    it('network down: says so, and names the offline presets', async () => {
      const down = await deadServer();
      try {
        const e = expectUserError(await run(path.join(tmp, 'b'), { endpoint: down.url('http') }), /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNRESET\)/);
        assert.match(e.hint!, /check the network connection/);
        assert.match(e.hint!, /--preset tiny/);
        assert.match(e.hint!, /--preset 7b-shape/);
      } finally {
        await down.close();
      }
    });
  });

  describe('replacing a complete setup, and what interrupted runs leave', () => {
    /** Every file under dir with its bytes (hex sha-less: the content itself is small here). */
    const snapshot = (dir: string) =>
      Object.fromEntries(
        (fs.readdirSync(dir, { recursive: true }) as string[])
          .filter((f) => fs.statSync(path.join(dir, f)).isFile())
          .sort()
          .map((f) => [f, fs.readFileSync(path.join(dir, f)).toString('base64')]),
      );
    /** A pid that no process has now: a child that has already exited. */
    const deadPid = () => spawnSync(process.execPath, ['-e', '']).pid!;

    it('--force without network leaves the complete setup as it was, marker and all', async () => {
      const dir = path.join(tmp, 'benchmark');
      assert.equal((await run(dir, { configOnly: true })).error, undefined);
      const before = snapshot(dir);
      const down = await deadServer();
      try {
        const r = await run(dir, { configOnly: true, force: true, endpoint: down.url('http') });
        expectUserError(r, /cannot reach http:\/\/127\.0\.0\.1:\d+ \(ECONNRESET\)[\s\S]*--preset tiny/);
      } finally {
        await down.close();
      }
      assert.deepEqual(snapshot(dir), before, 'nothing of the complete setup changed, nothing left beside it');
      const again = await run(dir, { configOnly: true });
      assert.equal(again.value!.skipped, true, 'it is still complete');
    });

    it('--force replaces it once the new one is ready, checking the files it already has instead of downloading them', async () => {
      const dir = path.join(tmp, 'benchmark');
      const first = (await run(dir)).value!.manifest;
      hub.log.length = 0;
      const r = await run(dir, { force: true, hp: { benchmark_data_seed: 7 } });
      assert.equal(r.error, undefined, String(r.error));
      const m = readManifest(dir)!;
      assert.notEqual(m.created_at, first.created_at);
      assert.equal(m.data.seed, 7);
      assert.notEqual(m.files.find((f) => f.path === DATA_PATH)!.sha256, first.files.find((f) => f.path === DATA_PATH)!.sha256, 'the data was redone');
      assert.deepEqual(m.files.filter((f) => f.path.startsWith('model/')), first.files.filter((f) => f.path.startsWith('model/')));
      assert.deepEqual(hub.log.filter((l) => /\/resolve\/|\/cdn\/model\//.test(l.url) && !l.url.startsWith('/datasets/')), [], 'no model file downloaded again');
      assert.deepEqual(fs.readdirSync(dir).sort(), ['data', 'manifest.json', 'model'], 'no staging or replaced folder left');
    });

    it('a replacement that crashed while moving in is finished by the next run', async () => {
      const dir = path.join(tmp, 'benchmark');
      await run(dir, { configOnly: true });
      const staged = path.join(tmp, 'staged');
      const newer = (await run(staged, { configOnly: true, hp: { benchmark_data_seed: 7 } })).value!.manifest;
      // The crash: model/ was already swapped (the old one moved aside), data/ and the manifest not yet.
      const pid = deadPid();
      const staging = path.join(dir, `.staging-${pid}`);
      const replaced = path.join(dir, `.replaced-${pid}`);
      fs.mkdirSync(staging);
      fs.mkdirSync(replaced);
      fs.rmSync(path.join(dir, 'manifest.json'));
      fs.renameSync(path.join(dir, 'model'), path.join(replaced, 'model'));
      fs.renameSync(path.join(staged, 'model'), path.join(dir, 'model'));
      fs.renameSync(path.join(staged, 'data'), path.join(staging, 'data'));
      fs.renameSync(path.join(staged, 'manifest.json'), path.join(staging, 'manifest.json'));
      hub.log.length = 0;
      const r = await run(dir, { configOnly: true, hp: { benchmark_data_seed: 7 } });
      assert.equal(r.error, undefined, String(r.error));
      assert.match(r.stderr, /had finished a new setup in \.staging-\d+ but not moved it in; moving it in now/);
      assert.equal(r.value!.skipped, true, 'the finished setup is the one asked for');
      assert.deepEqual(readManifest(dir), newer);
      assert.deepEqual(fs.readdirSync(dir).sort(), ['data', 'manifest.json', 'model']);
      assert.equal(hub.log.length, 0);
    });

    it('removes temp files of dead writers on start, and only those', async () => {
      const dir = path.join(tmp, 'benchmark');
      await run(dir, { configOnly: true });
      const dead = path.join(dir, 'data', `train.pt.tmp-${deadPid()}-0123abcd`);
      const live = path.join(dir, 'data', `train.pt.tmp-${process.pid}-0123abcd`); // this process is alive
      const other = path.join(dir, 'data', 'notes.tmp-x');
      for (const f of [dead, live, other]) fs.writeFileSync(f, Buffer.alloc(1000));
      const r = await run(dir, { configOnly: true });
      assert.equal(r.value!.skipped, true);
      assert.ok(!fs.existsSync(dead), 'a dead writer\'s temp file is removed');
      assert.ok(fs.existsSync(live) && fs.existsSync(other), 'a live writer\'s file and files not ours are kept');
      assert.match(r.stderr, /removed 1 temporary file\(s\) \(1000 B\) left by interrupted runs/);
    });

    it('an interrupted --force leaves its partial downloads to the next one, which resumes them', async () => {
      const dir = path.join(tmp, 'benchmark');
      await run(dir, { configOnly: true });
      // A first --force whose weights transfer fails for good: every attempt is cut at byte 100,000.
      hub.cutAt.set('model.safetensors', 100_000);
      const failed = await run(dir, { force: true });
      hub.cutAt.clear();
      assert.ok(failed.error, 'the transfer failed');
      assert.match(failed.stderr, /the complete setup there is unchanged; 1 partial download\(s\) kept in .*\.staging-\d+/);
      assert.deepEqual(readManifest(dir)!.source, { ...readManifest(dir)!.source, kind: 'hub', weights: false }, 'the config-only setup is still there');
      // The next --force, in another process as far as the folder can tell, adopts the staging folder.
      const pid = deadPid();
      const [ours] = fs.readdirSync(dir).filter((n) => n.startsWith('.staging-'));
      fs.renameSync(path.join(dir, ours), path.join(dir, `.staging-${pid}`));
      const r = await run(dir, { force: true });
      assert.equal(r.error, undefined, String(r.error));
      assert.match(r.stderr, /resuming the replacement an earlier run began in \.staging-\d+/);
      assert.match(r.stderr, /model\.safetensors: resuming at \d+ of/);
      assert.ok(fs.readFileSync(path.join(dir, 'model', 'model.safetensors')).equals(modelRepo().files['model.safetensors']));
      assert.deepEqual(fs.readdirSync(dir).sort(), ['data', 'manifest.json', 'model']);
    });

    it('records the cap on rows per document, and will not silently keep data made with another', async () => {
      const dir = path.join(tmp, 'benchmark');
      const m = (await run(dir, { configOnly: true })).value!.manifest;
      assert.equal(m.data.max_rows_per_document, 1, 'the default');
      assert.match(m.data.packing, /cut at 1 x 8 tokens/);
      const other = await run(dir, { configOnly: true, maxRows: 3 });
      expectUserError(other, /packed with at most 1 rows per document, not 3[\s\S]*add --force/);
      const forced = await run(dir, { configOnly: true, maxRows: 3, force: true });
      assert.equal(forced.value!.manifest.data.max_rows_per_document, 3);
      // a setup made before the cap existed says so
      const old: Manifest = { ...readManifest(dir)!, data: { ...readManifest(dir)!.data, max_rows_per_document: undefined } };
      writeManifest(dir, old);
      expectUserError(await run(dir, { configOnly: true }), /without a cap on rows per document, not 1/);
      expectUserError(await run(dir, { configOnly: true, maxRows: 0 }), /--max-rows-per-document must be a whole number of at least 1, not 0/);
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

  it('the CLI, interrupted by SIGINT mid-download: removes its own temp files, keeps the partial download, dies of the signal', async () => {
    const hpFile = path.join(tmp, 'hparams.json');
    fs.writeFileSync(hpFile, JSON.stringify(hparams()));
    const dir = path.join(tmp, 'cli');
    hub.stall.add('model.safetensors'); // the weights' transfer stops half-way and hangs
    const downloading = () => hub.log.some((l) => l.url.startsWith('/cdn/model/') && l.url.includes('model.safetensors'));
    let own = '';
    const r = await runCli(['setup-benchmark', '--benchmark-dir', dir, '--hparams', hpFile], {
      cwd: tmp,
      env: { HF_ENDPOINT: endpoint, HF_TOKEN: 'hf_good' },
      onSpawn: (child) => {
        const poll = setInterval(() => {
          if (!downloading()) return;
          clearInterval(poll);
          // What an atomic write of this process would leave if the signal came in the middle of it.
          own = path.join(dir, 'model', `config.json.tmp-${child.pid}-0123abcd`);
          fs.writeFileSync(own, 'half');
          child.kill('SIGINT');
        }, 50);
        child.on('exit', () => clearInterval(poll));
      },
    });
    assert.equal(r.signal, 'SIGINT', `it should die of the signal: code ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, /SIGINT: stopped; partial downloads are kept and resume on the next run/);
    assert.ok(own && !fs.existsSync(own), 'its own temp file is removed');
    assert.ok(fs.existsSync(path.join(dir, 'model', 'model.safetensors.partial')), 'the partial download is kept');
    assert.equal(readManifest(dir), null);
  });

  it('the CLI explains --max-rows-per-document and --force in --help, and refuses a cap below 1', async () => {
    const help = await runCli(['setup-benchmark', '--help'], { cwd: tmp });
    assert.equal(help.code, 0);
    assert.match(help.stdout.replace(/\s+/g, ' '), /--max-rows-per-document .*first N x seq_len tokens/);
    assert.match(help.stdout.replace(/\s+/g, ' '), /--force .*stays in place, untouched, until the new one is ready/);
    assert.match(help.stdout.replace(/\s+/g, ' '), /Without network: --preset tiny/);
    const bad = await runCli(['setup-benchmark', '--max-rows-per-document', '0', '--benchmark-dir', path.join(tmp, 'x')], { cwd: tmp, env: { HF_ENDPOINT: endpoint } });
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error: --max-rows-per-document must be a whole number of at least 1, not 0/m);
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
