// The local tournament (scripts/local-tournament.js) end to end, through the
// real harness on the CPU: three miners submit; the validator is SIGKILLed in
// the middle of the first evaluation (its sandboxed runners must die with it)
// and restarted; it then rejects the cheater with its reason, keeps the
// honest submissions, picks the leader and records weights; `status` shows it.
import { strict as assert } from 'assert';
import { execFile, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { PROJECT_ROOT } from '../src/util/paths';
import { currentLeader } from '../src/validator/scoring';
import type { StatusDoc } from '../src/validator/report';
import { loadHparams } from '../src/config/hparams';
import { processesUnder } from './helpers/processes';
import { willCompile } from './helpers/prewarm';
import { removeTmpDir, tmpDir } from './helpers/tmp';

const SCRIPT = path.join(PROJECT_ROOT, 'scripts', 'local-tournament.js');
const BIN = path.join(PROJECT_ROOT, 'bin', 'tournament');
const ENV = { ...process.env, TOURNAMENT_LOCAL_BLOCK_TIME: '1' };

function run(file: string, args: string[], cwd: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [file, ...args], { cwd, env: ENV, maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('validator: the local tournament (real harness, CPU)', function () {
  this.timeout(1_800_000);
  // The reference, the baseline miner and the cheater (the script's faster variant is made by the script).
  willCompile(path.join(PROJECT_ROOT, 'local_test', 'train.cpp'), path.join(PROJECT_ROOT, 'local_test', 'calibration', 'skip_last_step.cpp'));
  let dir: string;

  before(function () {
    if (!fs.existsSync(path.join(PROJECT_ROOT, 'build', 'Release', 'tournament.node'))) {
      // eslint-disable-next-line no-console
      console.log('      (skipped: the engine is not built; run `npm run build` first)');
      this.skip();
    }
    dir = tmpDir('local-tournament');
    fs.chmodSync(dir, 0o755); // the sandbox's own uid must reach the compiled plugins under it
  });
  after(() => dir && removeTmpDir(dir));

  it('rejects the cheater, keeps the honest, leads, weighs; survives a kill mid-evaluation', async () => {
    const work = path.join(dir, 'lt');
    const sub = await run(SCRIPT, [work, '--steps', 'submit'], PROJECT_ROOT);
    assert.equal(sub.code, 0, sub.stderr);
    // Smaller runs than the script's (each run's cost is steps x batch here): two
    // runs per evaluation stay, for the restart's check; skipping the last of two
    // steps is still the cheat, and an even larger one.
    const hpFile = path.join(work, 'hparams.json');
    fs.writeFileSync(hpFile, JSON.stringify({ ...JSON.parse(fs.readFileSync(hpFile, 'utf8')), eval_steps: 2, benchmark_batch_size: 4 }, null, 2));

    // Kill the validator in the middle of the first submission's timed run.
    const dataDir = path.join(work, 'validator-data');
    const child = spawn(process.execPath, [BIN, 'evaluate', '--network', 'local', '--once', '--hparams', 'hparams.json', '--benchmark-dir', path.join(PROJECT_ROOT, 'benchmark'), '--device', 'cpu'], { cwd: work, env: ENV, stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    await new Promise<void>((resolve, reject) => {
      child.stderr.on('data', (d) => {
        log += d;
        if (/#1 .*run 1\/2: submission: timed/.test(log)) child.kill('SIGKILL');
      });
      child.on('close', (_code, signal) => (signal === 'SIGKILL' ? resolve() : reject(new Error(`the validator was not killed mid-evaluation:\n${log}`))));
    });
    const deadline = Date.now() + 10000;
    while (processesUnder(dataDir).length && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(processesUnder(dataDir), [], 'the sandboxed runners died with the validator');

    const rest = await run(SCRIPT, [work, '--steps', 'evaluate,status'], PROJECT_ROOT);
    assert.equal(rest.code, 0, rest.stderr);
    assert.match(rest.stderr, /#1 .*evaluation was interrupted/);
    assert.match(rest.stdout, /leaderboard/);

    const st = await run(BIN, ['status', '--json', '--hparams', 'hparams.json'], work);
    assert.equal(st.code, 0, st.stderr);
    const d = JSON.parse(st.stdout) as StatusDoc;
    // Miners by their hotkeys: two commits in the same block are taken in hotkey order, so ids need not follow the script's order.
    const address = (name: string) => (JSON.parse(fs.readFileSync(path.join(work, 'wallets', name, 'hotkeys', 'default'), 'utf8')) as { ss58Address: string }).ss58Address;
    const byHotkey = new Map(d.recent.map((s) => [s.hotkey, s]));
    const [baseline, variant, cheater] = ['baseline', 'variant', 'cheater'].map((name) => byHotkey.get(address(name))!);
    assert.deepEqual([baseline?.state, variant?.state, cheater?.state], ['accepted', 'accepted', 'rejected'], JSON.stringify(d.recent, null, 1));
    assert.equal(cheater.reject_code, 'verification');
    assert.match(cheater.reasons.join('\n'), /probe_loss|update_error/);
    const killed = d.recent.find((s) => s.id === 1)!;
    assert.equal(killed.attempts, 2, 'the killed evaluation started over');
    if (killed.state === 'accepted') assert.equal(killed.seeds.length, 2, 'two runs on record, from one evaluation');
    // The leader is the fold's over the measured scores (the variant, about 1.25x the baseline, unless this machine's timing noise says otherwise).
    const hp = loadHparams(path.join(work, 'hparams.json'));
    const expected = currentLeader([baseline, variant].map((s) => ({ id: s.id, block: s.block, score: s.tokens_per_second as number })), hp.leader_threshold);
    assert.equal(d.leader?.id, expected?.leader.id);
    assert.equal(d.weights?.status, 'sent');
    assert.equal(d.weights?.mode, 'local');
    const leaderUid = d.leader!.uid as number;
    assert.deepEqual(d.weights?.uids, [leaderUid, 99].sort((a, b) => a - b));
    assert.deepEqual(d.weights?.weights, leaderUid < 99 ? [3449, 65535] : [65535, 3449]);
    // eslint-disable-next-line no-console
    console.log(`      baseline ${baseline.tokens_per_second?.toFixed(1)} tokens/s, variant ${variant.tokens_per_second?.toFixed(1)}; leader #${d.leader?.id}`);
  });
});
