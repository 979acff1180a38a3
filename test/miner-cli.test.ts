// bin/tournament miner ... end to end, in a scratch folder: the local network,
// uploads to a loopback S3 server, and every kind of bad input.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { runCli, CliResult } from './helpers/miner-cli';
import { writeHotkey, writeUriHotkey, TestHotkey } from './helpers/miner-wallet';
import { startS3, LoopbackS3 } from './helpers/miner-s3';
import { deadServer, DeadServer } from './helpers/dead-server';
import { willCompile } from './helpers/prewarm';
import { removeTmpDir, tmpDir } from './helpers/tmp';
import { PROJECT_ROOT } from '../src/util/paths';
import { sha256Hex } from '../src/storage/store';

// A submission that compiles against the contract (it would not train: the
// harness's verification catches that, not these checks).
const GOOD = `// a submission
#include <tournament/train_api.h>

tournament::TrainResult inner_steps(tournament::Qwen2ForCausalLM& model, tournament::DataIterator& data,
                                    int64_t num_steps, torch::Device device,
                                    const tournament::OptimizerConfig& optimizer) {
  return {};
}
`;

// Passes every structure check but does not compile: a header that does not
// exist, where the compiler stops at once (an undeclared name would first cost
// the whole libtorch template instantiation, about 4 s here).
const DOES_NOT_COMPILE = GOOD.replace('#include <tournament/train_api.h>', '#include <tournament/train_api.h>\n#include <not_declared_anywhere.h>');

/** The compile check can run here: the engine is built (its plugin flags) and bubblewrap is installed. */
const CAN_COMPILE = fs.existsSync(path.join(PROJECT_ROOT, 'build', 'Release', 'plugin_build.json'));

function listFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile()).map((d) => path.join(d.parentPath ?? (d as unknown as { path: string }).path, d.name)).sort();
}

function assertFails(r: CliResult, re: RegExp) {
  assert.notEqual(r.code, 0, `expected failure, got success:\n${r.stdout}`);
  assert.match(r.stderr, re);
  assert.doesNotMatch(r.stderr, /internal error|\n\s+at /, 'a user error must not print a stack');
}

describe('miner CLI', function () {
  this.timeout(120000);
  willCompile({ text: GOOD });
  let dir: string;
  let hk: TestHotkey;
  let hparams: string;
  let wallet: string[];

  beforeEach(async function () {
    dir = tmpDir('miner-cli');
    hk = await writeHotkey(path.join(dir, 'wallets'));
    fs.writeFileSync(path.join(dir, 'train.cpp'), GOOD);
    hparams = path.join(PROJECT_ROOT, 'hparams', 'hparams.json');
    wallet = ['--wallet.path', hk.walletsDir, '--wallet.name', hk.name, '--wallet.hotkey', hk.hotkey];
  });
  afterEach(() => removeTmpDir(dir));

  const run = (args: string[], env?: Record<string, string>) => runCli([...args, '--hparams', hparams], { cwd: dir, env });

  describe('miner test', function () {
    it('passes a good file, compiling it when the engine is built (else says why it skipped)', async function () {
      this.timeout(400000); // a real compile when the engine is built
      const r = await run(['miner', 'test', 'train.cpp', '--json']);
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.sha256, sha256Hex(Buffer.from(GOOD)));
      const compile = doc.checks.find((c: { name: string }) => c.name === 'compiles');
      if (CAN_COMPILE) {
        assert.equal(doc.compile, 'passed', compile.detail);
        assert.equal(doc.passed, true);
      } else {
        assert.equal(doc.compile, 'skipped');
        assert.match(compile.detail, /^skipped: .+/);
      }
      assert.equal(r.code, 0, r.stderr);
      const plain = await run(['miner', 'test', 'train.cpp', '--no-compile']);
      assert.equal(plain.code, 0, plain.stderr);
      assert.match(plain.stdout, /defines inner_steps: ok/);
      assert.match(plain.stdout, /SKIP\s+compiles: skipped: --no-compile/);
    });

    const bad: [string, string | Buffer, RegExp][] = [
      ['no include', GOOD.replace('#include <tournament/train_api.h>', '#include <torch/torch.h>'), /FAIL\s+includes tournament\/train_api.h/],
      ['include only in a comment', GOOD.replace('#include <tournament/train_api.h>', '// #include <tournament/train_api.h>'), /FAIL\s+includes/],
      ['no inner_steps definition', GOOD.replace(/\{\n  return \{\};\n\}/, ';'), /FAIL\s+defines inner_steps/],
      ['binary', Buffer.from([0xff, 0xfe, 0x00, 0x41]), /FAIL\s+utf-8 text/],
      ['empty', '', /FAIL\s+size: 0 bytes.*empty/],
      ['too big', GOOD + '//'.padEnd(300000, 'x') + '\n', /FAIL\s+size: \d+ bytes \(limit 262144\)/],
    ];
    for (const [what, content, re] of bad) {
      it(`fails a file with ${what}`, async function () {
        fs.writeFileSync(path.join(dir, 'train.cpp'), content);
        const r = await run(['miner', 'test', 'train.cpp', '--no-compile']);
        assert.equal(r.code, 1);
        assert.match(r.stdout, re);
        assert.match(r.stdout, /not a valid submission/);
      });
    }

    it('fails a file that does not compile, with the compiler\'s error', async function () {
      if (!CAN_COMPILE) this.skip(); // needs the engine built (npm run build)
      this.timeout(400000);
      fs.writeFileSync(path.join(dir, 'train.cpp'), DOES_NOT_COMPILE);
      const r = await run(['miner', 'test', 'train.cpp']);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /FAIL\s+compiles: train.cpp does not compile:[\s\S]*not_declared_anywhere/);
    });

    it('works from any folder: hparams and the baseline come from the installation', async function () {
      const r = await runCli(['miner', 'test', '--no-compile'], { cwd: dir });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /local_test\/train.cpp: structure checks pass/);
    });

    it('fails a missing file', async function () {
      const r = await run(['miner', 'test', 'nope.cpp']);
      assert.equal(r.code, 1);
      assert.match(r.stdout, /FAIL\s+exists: nope.cpp: no such file/);
    });
  });

  describe('local network end to end', function () {
    const local = (blockTime: string) => ({ TOURNAMENT_LOCAL_BLOCK_TIME: blockTime });

    // The simulated chain's clock is moved by shifting its genesis back, so the
    // test does not depend on how fast the machine runs the CLI.
    function advanceBlocks(n: number) {
      const file = path.join(dir, '.local_commitments', 'chain.json');
      const c = JSON.parse(fs.readFileSync(file, 'utf8'));
      c.genesis_ms -= n * c.block_time_s * 1000;
      fs.writeFileSync(file, JSON.stringify(c));
    }

    it('submit, then status: pending with the reveal delay, then revealed with what validators fetch', async function () {
      const env = local('10');
      const sub = await run(['miner', 'submit', 'train.cpp', '--network', 'local', '--json', ...wallet, ...(CAN_COMPILE ? [] : ['--no-compile'])], env);
      assert.equal(sub.code, 0, sub.stderr);
      const receipt = JSON.parse(sub.stdout);
      assert.equal(receipt.hotkey, hk.address);
      assert.equal(receipt.reveal_block - receipt.block, 100, 'reveal_blocks from hparams');
      assert.equal(receipt.sha256, sha256Hex(Buffer.from(GOOD)));

      const pending = JSON.parse((await run(['miner', 'status', '--network', 'local', '--json', ...wallet], env)).stdout);
      assert.equal(pending.pending.length, 1);
      assert.equal(pending.pending[0].reveal_block, receipt.reveal_block);
      assert.equal(pending.revealed.length, 0);
      assert.equal(pending.latest, null);
      assert.equal(pending.next_commit_block, receipt.block + 100);

      // the rate limit holds, and refusing writes nothing
      const accountFile = path.join(dir, '.local_commitments', '3', `${hk.address}.json`);
      const before = fs.readFileSync(accountFile, 'utf8');
      advanceBlocks(60);
      const again = await run(['miner', 'commit', 'train.cpp', '--no-compile', '--network', 'local', ...wallet], env);
      assertFails(again, /rate limit: the last commitment was at block \d+, now \d+; the next is allowed at block \d+/);
      assert.equal(fs.readFileSync(accountFile, 'utf8'), before);
      const stillPending = JSON.parse((await run(['miner', 'status', '--network', 'local', '--json', ...wallet], env)).stdout);
      assert.equal(stillPending.pending.length, 1, 'not revealed before reveal_blocks have passed');

      advanceBlocks(41);
      const st = await run(['miner', 'status', '--network', 'local', '--json', '--address', hk.address], env);
      assert.equal(st.code, 0, st.stderr);
      const revealed = JSON.parse(st.stdout);
      assert.equal(revealed.pending.length, 0);
      assert.equal(revealed.revealed.length, 1);
      assert.equal(revealed.revealed[0].block, receipt.reveal_block);
      assert.equal(revealed.latest.payload.sha256, receipt.sha256);
      const fetched = fs.readFileSync(path.join(dir, revealed.latest.fetch));
      assert.equal(sha256Hex(fetched), receipt.sha256, 'what a validator fetches is the committed code');

      const text = await run(['miner', 'status', '--network', 'local', ...wallet], env);
      assert.match(text.stdout, /revealed  at block \d+: sha256 [0-9a-f]{64}/);
      assert.match(text.stdout, /validators fetch \.local_storage\/tournament\/train\/[0-9a-f]{64}\.cpp/);

      // and the next commitment is allowed again
      fs.appendFileSync(path.join(dir, 'train.cpp'), '// v2\n');
      const second = await run(['miner', 'submit', 'train.cpp', '--no-compile', '--network', 'local', '--json', ...wallet], env);
      assert.equal(second.code, 0, second.stderr);
      assert.notEqual(JSON.parse(second.stdout).sha256, receipt.sha256);
    });

    it('a file that does not compile: submit uploads nothing and commits nothing', async function () {
      if (!CAN_COMPILE) this.skip(); // needs the engine built (npm run build)
      this.timeout(400000);
      fs.writeFileSync(path.join(dir, 'train.cpp'), DOES_NOT_COMPILE);
      const r = await run(['miner', 'submit', 'train.cpp', '--network', 'local', ...wallet], local('0.05'));
      assertFails(r, /train.cpp does not compile:[\s\S]*not_declared_anywhere[\s\S]*nothing was uploaded or committed/);
      assert.deepEqual(listFiles(path.join(dir, '.local_storage')), []);
      assert.deepEqual(listFiles(path.join(dir, '.local_commitments', '3')), []);
    });

    it('refuses to replace a commitment still pending, and replaces it with --replace-pending as the chain does', async function () {
      // reveal_blocks beyond the rate limit, so the limit passes while the first is still pending
      const slow = path.join(dir, 'hparams-slow.json');
      fs.writeFileSync(slow, JSON.stringify({ ...JSON.parse(fs.readFileSync(hparams, 'utf8')), reveal_blocks: 150 }));
      const runSlow = (args: string[]) => runCli([...args, '--hparams', slow], { cwd: dir, env: local('10') });
      const first = await runSlow(['miner', 'submit', 'train.cpp', '--no-compile', '--network', 'local', '--json', ...wallet]);
      assert.equal(first.code, 0, first.stderr);
      const firstBlock = JSON.parse(first.stdout).block;
      advanceBlocks(101);
      const accountFile = path.join(dir, '.local_commitments', '3', `${hk.address}.json`);
      const before = fs.readFileSync(accountFile, 'utf8');
      const refused = await runSlow(['miner', 'commit', 'train.cpp', '--no-compile', '--network', 'local', ...wallet]);
      assertFails(refused, new RegExp(`the commitment made at block ${firstBlock} is still pending .*would replace it on chain[\\s\\S]*--replace-pending`));
      assert.equal(fs.readFileSync(accountFile, 'utf8'), before, 'refusing writes nothing');

      const replaced = await runSlow(['miner', 'commit', 'train.cpp', '--no-compile', '--network', 'local', '--replace-pending', ...wallet]);
      assert.equal(replaced.code, 0, replaced.stderr);
      assert.match(replaced.stdout, new RegExp(`replaced the pending commitment made at block ${firstBlock}`));
      const st = JSON.parse((await runSlow(['miner', 'status', '--network', 'local', '--json', ...wallet])).stdout);
      assert.equal(st.pending.length, 1, 'one pending commitment per hotkey, as on chain');
      assert.ok(st.pending[0].block > firstBlock);
      advanceBlocks(151);
      const later = JSON.parse((await runSlow(['miner', 'status', '--network', 'local', '--json', ...wallet])).stdout);
      assert.deepEqual(later.revealed.map((r: { block: number }) => r.block), [st.pending[0].reveal_block], 'the replaced one is never revealed');
    });

    it('works without a wallet: a generated development hotkey, said so, the same on the next run', async function () {
      const env = { ...local('0.05'), HOME: dir }; // no ~/.bittensor here
      const r = await run(['miner', 'submit', 'train.cpp', '--no-compile', '--network', 'local'], env);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /development hotkey, .*\.local_commitments\/dev-hotkey/);
      const address = /by hotkey (\w+)/.exec(r.stdout)![1];
      const st = JSON.parse((await run(['miner', 'status', '--network', 'local', '--json'], env)).stdout);
      assert.equal(st.hotkey, address);
      assert.equal(st.pending.length, 1);
      // an explicit wallet is never replaced by the development key
      assertFails(await run(['miner', 'status', '--network', 'local', '--wallet.name', 'mine'], env), /no hotkey file at/);
    });

    it('a hotkey btcli made with --uri //Alice signs a local commitment', async function () {
      const alice = await writeUriHotkey(hk.walletsDir, '//Alice', 'alice', 'hk');
      const r = await run(['miner', 'submit', 'train.cpp', '--no-compile', '--network', 'local', '--json', '--wallet.path', hk.walletsDir, '--wallet.name', 'alice', '--wallet.hotkey', 'hk'], local('0.05'));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(JSON.parse(r.stdout).hotkey, '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY');
      assert.equal(alice.address, '5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY');
      assert.ok(fs.existsSync(path.join(dir, '.local_commitments', '3', `${alice.address}.json`)));
    });

    it('a damaged .local_commitments/ gives one clear message, never a crash', async function () {
      const env = local('0.05');
      assert.equal((await run(['miner', 'submit', 'train.cpp', '--no-compile', '--network', 'local', ...wallet], env)).code, 0);
      const accountFile = path.join(dir, '.local_commitments', '3', `${hk.address}.json`);
      const good = JSON.parse(fs.readFileSync(accountFile, 'utf8'));
      const chainFile = path.join(dir, '.local_commitments', 'chain.json');
      const goodChain = fs.readFileSync(chainFile, 'utf8');
      const damage: [string, string][] = [
        [accountFile, JSON.stringify({ ...good, commitments: {} })],
        [accountFile, JSON.stringify({ ...good, commitments: [{ block: 1 }] })],
        [accountFile, JSON.stringify([])],
        [accountFile, '{ truncated'],
        [chainFile, JSON.stringify({ genesis_ms: 'soon' })],
      ];
      for (const [file, text] of damage) {
        fs.writeFileSync(accountFile, JSON.stringify(good));
        fs.writeFileSync(chainFile, goodChain);
        fs.writeFileSync(file, text);
        for (const cmd of [['status'], ['commit', 'train.cpp', '--no-compile']]) {
          const r = await run(['miner', ...cmd, '--network', 'local', ...wallet], env);
          assertFails(r, /the local network's state is damaged: .*(chain\.json|\.json) [\s\S]*delete \.local_commitments\//);
        }
      }
    });

    it('commit before upload is refused and writes nothing', async function () {
      const r = await run(['miner', 'commit', 'train.cpp', '--no-compile', '--network', 'local', ...wallet], local('0.05'));
      assertFails(r, /is not uploaded to local storage/);
      assert.deepEqual(listFiles(path.join(dir, '.local_commitments', '3')), []);
    });

    it('a missing or malformed wallet stops submit before anything is written', async function () {
      const r = await run(['miner', 'submit', 'train.cpp', '--no-compile', '--network', 'local', '--wallet.path', hk.walletsDir, '--wallet.name', 'nobody'], local('0.05'));
      assertFails(r, /no hotkey file at .*nobody\/hotkeys\/default/);
      fs.writeFileSync(hk.file, '{"secretSeed": "0x12"}');
      const r2 = await run(['miner', 'submit', 'train.cpp', '--no-compile', '--network', 'local', ...wallet], local('0.05'));
      assertFails(r2, /"secretSeed" must be 32 bytes/);
      assert.deepEqual(listFiles(path.join(dir, '.local_storage')), []);
      assert.deepEqual(listFiles(path.join(dir, '.local_commitments', '3')), []);
    });

    it('a bad file stops submit before anything is written', async function () {
      fs.writeFileSync(path.join(dir, 'train.cpp'), 'int main() {}\n');
      const r = await run(['miner', 'submit', 'train.cpp', '--no-compile', '--network', 'local', ...wallet]);
      assertFails(r, /not a valid submission: includes tournament\/train_api.h/);
      assert.deepEqual(listFiles(path.join(dir, '.local_storage')), []);
    });
  });

  describe('R2 (a loopback S3 server) and subtensor endpoints', function () {
    let s3: LoopbackS3;
    before(async () => (s3 = await startS3('miner-cli')));
    after(async () => s3?.close());

    const r2env = (extra: Record<string, string> = {}) => ({
      TOURNAMENT_R2_ACCOUNT_ID: 'test-account',
      TOURNAMENT_R2_BUCKET_NAME: s3.bucket,
      TOURNAMENT_R2_ACCESS_KEY_ID: s3.accessKeyId,
      TOURNAMENT_R2_SECRET_ACCESS_KEY: s3.secretAccessKey,
      TOURNAMENT_R2_ENDPOINT: s3.endpoint,
      ...extra,
    });

    // A chain node that is down: held on its port for the whole block, resetting every connection.
    let down: DeadServer;
    before(async () => (down = await deadServer()));
    after(async () => down?.close());

    it('uploads to the bucket, content-addressed, and says so', async function () {
      const r = await run(['miner', 'upload', 'train.cpp', '--no-compile', '--json'], r2env());
      assert.equal(r.code, 0, r.stderr);
      const doc = JSON.parse(r.stdout);
      assert.equal(doc.key, `tournament/train/${sha256Hex(Buffer.from(GOOD))}.cpp`);
      assert.equal(doc.uploaded, true);
      const again = JSON.parse((await run(['miner', 'upload', 'train.cpp', '--no-compile', '--json'], r2env())).stdout);
      assert.equal(again.uploaded, false);
      assert.ok(!r.stdout.includes(s3.secretAccessKey) && !r.stderr.includes(s3.secretAccessKey));
    });

    it('reads settings from .env', async function () {
      const env = r2env();
      fs.writeFileSync(path.join(dir, '.env'), Object.entries(env).map(([k, v]) => `${k}=${v}`).join('\n') + '\n');
      const r = await run(['miner', 'upload', 'train.cpp', '--no-compile']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /key\s+tournament\/train\/[0-9a-f]{64}\.cpp/);
    });

    it('names missing settings and a refusing bucket', async function () {
      assertFails(await run(['miner', 'upload', 'train.cpp', '--no-compile'], { TOURNAMENT_R2_ACCOUNT_ID: 'x' }), /missing R2 settings: TOURNAMENT_R2_BUCKET_NAME, TOURNAMENT_R2_ACCESS_KEY_ID, TOURNAMENT_R2_SECRET_ACCESS_KEY/);
      assertFails(await run(['miner', 'upload', 'train.cpp', '--no-compile'], r2env({ TOURNAMENT_R2_BUCKET_NAME: 'not-there' })), /bucket does not exist/);
      assertFails(await run(['miner', 'upload', 'train.cpp', '--no-compile'], r2env({ TOURNAMENT_R2_ACCESS_KEY_ID: 'WRONG' })), /access denied/);
    });

    it('commit: checks read access and size before contacting the chain, and reports a chain that is down', async function () {
      assert.equal((await run(['miner', 'upload', 'train.cpp', '--no-compile'], r2env())).code, 0);
      const ws = down.url('ws');
      assertFails(await run(['miner', 'commit', 'train.cpp', '--no-compile', '--network', ws, ...wallet], r2env()), /validators could not fetch your code: no read access/);
      const longUrl = 'https://pub.example.dev/' + 'x'.repeat(900);
      assertFails(await run(['miner', 'commit', 'train.cpp', '--no-compile', '--network', ws, ...wallet], r2env({ TOURNAMENT_R2_PUBLIC_URL: longUrl })), /the commitment would be \d+ bytes; the chain's limit leaves room for 780/);
      const refused = await run(['miner', 'commit', 'train.cpp', '--no-compile', '--network', ws, ...wallet], r2env({ TOURNAMENT_R2_PUBLIC_URL: 'https://pub.example.dev' }));
      assertFails(refused, /cannot reach ws:\/\/127\.0\.0\.1:\d+: .*ECONNRESET/);
      const status = await run(['miner', 'status', '--network', ws, '--address', hk.address], r2env());
      assertFails(status, /cannot reach/);
    });

    it('rejects an unknown network and a bad address', async function () {
      assertFails(await run(['miner', 'status', '--network', 'mainnet', '--address', hk.address]), /unknown network "mainnet"/);
      assertFails(await run(['miner', 'status', '--network', 'local', '--address', 'nope']), /not a valid ss58 address/);
    });
  });

  it('--help explains each command', async function () {
    for (const cmd of ['test', 'upload', 'commit', 'submit', 'status']) {
      const r = await run(['miner', cmd, '--help']);
      assert.equal(r.code, 0);
      assert.ok(r.stdout.length > 600, `${cmd} --help is thin`);
    }
    const top = await run(['miner', '--help']);
    assert.match(top.stdout, /miner submit/);
    assert.match(top.stdout, /--network local/);
  });
});
