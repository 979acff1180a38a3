// The validator's CLI face: clear messages for user mistakes (never a stack
// trace), one validator per data directory, and `status` as text and JSON.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as path from 'path';
import { HPARAMS_FILE } from '../src/util/paths';
import { ValidatorStore } from '../src/validator/store';
import { fakeVerdict } from './helpers/validator-fakes';
import { runCli } from './helpers/miner-cli';
import { removeTmpDir, tmpDir } from './helpers/tmp';


describe('validator: CLI', function () {
  this.timeout(60000);
  let dir: string;
  before(() => {
    dir = tmpDir('validator-cli');
  });
  after(() => removeTmpDir(dir));

  const noStack = (s: string) => assert.doesNotMatch(s, /\n\s+at .*:\d+:\d+/, 'no stack trace');

  it('says what is wrong: no database, no benchmark, unknown network, a busy data directory', async () => {
    let r = await runCli(['status', '--data-dir', path.join(dir, 'none'), '--hparams', HPARAMS_FILE], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^error: no validator database in .*none\nhint: run `tournament evaluate` first/m);
    noStack(r.stderr);

    r = await runCli(['evaluate', '--network', 'local', '--once', '--benchmark-dir', path.join(dir, 'nope'), '--hparams', HPARAMS_FILE], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /error: .*nope\/model\/config\.json does not exist: the benchmark is not set up\nhint: run `tournament setup-benchmark`/);
    noStack(r.stderr);

    r = await runCli(['evaluate', '--network', 'nowhere', '--hparams', HPARAMS_FILE], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unknown network "nowhere"/);

    r = await runCli(['evaluate', '--network', 'local', '--max-attempts', '0', '--hparams', HPARAMS_FILE], { cwd: dir });
    assert.match(r.stderr, /--max-attempts must be an integer >= 1, got 0/);

    // A live process holds the lock: this test's own pid.
    const busy = path.join(dir, 'busy');
    fs.mkdirSync(path.join(dir, 'bench', 'model'), { recursive: true });
    fs.mkdirSync(path.join(dir, 'bench', 'data'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'bench', 'model', 'config.json'), '{}');
    fs.writeFileSync(path.join(dir, 'bench', 'data', 'train.pt'), '');
    fs.mkdirSync(busy);
    fs.writeFileSync(path.join(busy, 'evaluate.lock'), `${process.pid}\n`);
    r = await runCli(['evaluate', '--network', 'local', '--once', '--data-dir', busy, '--benchmark-dir', path.join(dir, 'bench'), '--hparams', HPARAMS_FILE], { cwd: dir });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`another validator \\(pid ${process.pid}\\) is running on`));
  });

  it('status prints the leaderboard, verdicts with reasons and weights, as text and as JSON', async () => {
    const dataDir = path.join(dir, 'data');
    const store = ValidatorStore.open(dataDir, { network: 'local', netuid: 3 });
    const ids = store.addSubmissions([
      { hotkey: '5Honest', uid: 4, block: 10, commitmentHex: '0x01', sha256: 'a'.repeat(64), size: 10, location: null },
      { hotkey: '5Cheater', uid: 5, block: 20, commitmentHex: '0x02', sha256: 'b'.repeat(64), size: 10, location: null },
      { hotkey: '5Garbage', uid: 6, block: 30, commitmentHex: '0x03', sha256: null, size: null, location: null, rejected: { code: 'invalid_commitment', reason: '"account_id" must be 32 lowercase hex digits' } },
    ]);
    store.startEvaluation(ids[0]);
    store.recordVerdict(ids[0], fakeVerdict(1234.5, [], 777));
    store.startEvaluation(ids[1]);
    store.recordVerdict(ids[1], fakeVerdict(null, ['probe loss off by 0.03']));
    const w = store.beginWeights({ block: 40, leaderSubmissionId: ids[0], reason: 'leader submission 1 (uid 4) gets 0.05', uids: [1, 4], weights: [65535, 3449] });
    store.finishWeights(w, { status: 'sent', mode: 'local' });
    store.close();

    const text = await runCli(['status', '--data-dir', dataDir, '--hparams', HPARAMS_FILE], { cwd: dir });
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /leader\s+#1 uid 4 5Honest: 1234\.5 tokens\/s/);
    assert.match(text.stdout, /1\.\s+1234\.5 tokens\/s\s+#1 uid 4/);
    assert.match(text.stdout, /#2 .*rejected\s+verification: run 1: probe_loss: probe loss off by 0\.03/);
    assert.match(text.stdout, /#3 .*invalid_commitment: "account_id" must be/);
    assert.match(text.stdout, /weights\s+block 40, sent \(local\): 1:65535 4:3449/);

    const json = await runCli(['status', '--data-dir', dataDir, '--hparams', HPARAMS_FILE, '--json'], { cwd: dir });
    const d = JSON.parse(json.stdout);
    assert.equal(d.leader.id, 1);
    assert.ok(Math.abs(d.leader.score_to_beat - 1234.5 * 1.01) < 1e-9);
    assert.deepEqual(d.leader.seeds, [777]);
    assert.deepEqual(d.counts, { pending: 0, evaluating: 0, accepted: 1, rejected: 2 });
    assert.deepEqual(d.recent.map((s: { reject_code: string | null }) => s.reject_code), ['invalid_commitment', 'verification', null]);
    assert.deepEqual([d.weights.uids, d.weights.weights], [[1, 4], [65535, 3449]]);
  });
});
