// Kill the validator at any moment and restart it: it resumes, loses nothing,
// never evaluates a submission that already has a verdict, never skips one.
// A validator process (helpers/validator-child.ts: the real loop and store, a
// stand-in harness) is killed with SIGKILL at write points inside its
// transactions and by the test in the middle of evaluations, then restarted
// until a pass completes.
import { strict as assert } from 'assert';
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { HPARAMS_FILE } from '../src/util/paths';
import { ValidatorStore } from '../src/validator/store';
import type { ChildConfig } from './helpers/validator-child';
import { removeTmpDir, tmpDir } from './helpers/tmp';

const CHILD = path.join(__dirname, 'helpers', 'validator-child.js');

interface Outcome {
  code: number | null;
  signal: NodeJS.Signals | null;
}

function runChild(config: string, opts: { crashAt?: string; killOnStart?: number; signal?: NodeJS.Signals; journal: string }): Promise<Outcome> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, ...(opts.crashAt ? { CRASH_AT: opts.crashAt } : {}) };
    const child = spawn(process.execPath, [CHILD, config], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    let timer: NodeJS.Timeout | undefined;
    if (opts.killOnStart !== undefined) {
      // SIGKILL in the middle of the n-th evaluation this process starts.
      const before = countLines(opts.journal, 'start');
      timer = setInterval(() => {
        if (countLines(opts.journal, 'start') >= before + (opts.killOnStart as number)) {
          clearInterval(timer);
          setTimeout(() => child.kill(opts.signal ?? 'SIGKILL'), 50);
        }
      }, 10);
    }
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer) clearInterval(timer);
      if (code !== 0 && code !== 143 && signal === null) reject(new Error(`validator child failed: ${stderr}`));
      else resolve({ code, signal });
    });
  });
}

function journalLines(file: string): string[][] {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim().split('\n').filter(Boolean).map((l) => l.split(' ')) : [];
}

function countLines(file: string, kind: string): number {
  return journalLines(file).filter((l) => l[0] === kind).length;
}

describe('validator: kill and restart', function () {
  this.timeout(120000);
  let dir: string;
  before(() => {
    dir = tmpDir('validator-restart');
  });
  after(() => removeTmpDir(dir));

  /** A child's configuration in its own files under the test folder. */
  function setup(name: string, evalMs: number, reveals: ChildConfig['reveals']): { cfg: ChildConfig; config: string; journal: string } {
    const journal = path.join(dir, `journal-${name}.txt`);
    const cfg: ChildConfig = { dataDir: path.join(dir, `data-${name}`), hparams: HPARAMS_FILE, journal, evalMs, reveals };
    const config = path.join(dir, `config-${name}.json`);
    fs.writeFileSync(config, JSON.stringify(cfg));
    return { cfg, config, journal };
  }

  it('resumes after SIGKILL at every write point and mid-evaluation, judging each submission exactly once', async () => {
    const { cfg, config, journal } = setup('kill', 300, [
      ['A', 'a'.repeat(100), 10],
      ['B', 'b'.repeat(150), 120],
      ['C', 'cheat', 230],
      ['D', 'd'.repeat(120), 340],
      ['E', 'e'.repeat(250), 450],
      ['F', 'f'.repeat(90), 560],
    ]);

    // Each run dies at its point; the order walks through discovery, the start of an evaluation, the
    // middle of one, the verdict's transaction (runs, verdict, leader) and the weights.
    const kills: { crashAt?: string; killOnStart?: number }[] = [
      { crashAt: 'add-submission:3' },
      { crashAt: 'start-evaluation:1' },
      { killOnStart: 1 },
      { crashAt: 'insert-run:1' },
      { crashAt: 'record-verdict:1' },
      { crashAt: 'add-leader:1' },
      { killOnStart: 2 },
      { crashAt: 'begin-weights:2' },
      { crashAt: 'weights-recorded:1' },
      { crashAt: 'reject:1' },
    ];
    const outcomes: string[] = [];
    for (const k of kills) {
      const o = await runChild(config, { ...k, journal });
      outcomes.push(`${k.crashAt ?? `kill during evaluation ${k.killOnStart}`}: ${o.signal ?? `exit ${o.code}`}`);
    }
    // Then until a pass completes undisturbed.
    let last: Outcome;
    let restarts = 0;
    do {
      last = await runChild(config, { journal });
      restarts++;
    } while (last.code !== 0 && restarts < 5);
    assert.equal(last.code, 0, outcomes.join('\n'));
    assert.ok(outcomes.filter((o) => o.includes('SIGKILL')).length >= 7, `most runs were killed:\n${outcomes.join('\n')}`);

    const store = ValidatorStore.openReadOnly(cfg.dataDir)!;
    try {
      const rows = store.recent(100).reverse();
      // Nothing lost, nothing skipped: one row per revealed commitment, each with its verdict.
      assert.deepEqual(rows.map((r) => [r.hotkey, r.state]), [['A', 'accepted'], ['B', 'accepted'], ['C', 'rejected'], ['D', 'accepted'], ['E', 'accepted'], ['F', 'accepted']]);
      assert.deepEqual(rows.map((r) => r.tokens_per_second), [100, 150, null, 120, 250, 90]);
      assert.equal(rows.find((r) => r.hotkey === 'C')!.reject_code, 'verification');
      // Never judged twice: no evaluation of a submission started after its verdict was committed,
      // and the runs on record are those of exactly one evaluation.
      const starts = journalLines(journal).filter((l) => l[0] === 'start');
      for (const r of rows) {
        const finished = Date.parse(r.finished_at as string);
        const mine = starts.filter((l) => Number(l[1]) === r.id);
        assert.ok(mine.length >= 1, `#${r.id} was evaluated`);
        assert.ok(mine.every((l) => Number(l[2]) < finished), `#${r.id}: an evaluation started after its verdict`);
        assert.equal(store.runsOf(r.id).filter((x) => x.role === 'submission').length, 1);
        assert.ok(r.attempts <= 5);
      }
      const interrupted = rows.filter((r) => r.attempts > 1).length;
      assert.ok(interrupted >= 2, 'some evaluations were interrupted and started over');
      // The leader and the weights followed: E leads (250 beats 150 by more than the decayed 42% threshold B set by beating A by 50%), no weights left pending.
      assert.equal(store.lastLeader()?.submission_id, rows.find((r) => r.hotkey === 'E')!.id);
      const w = store.weightsHistory(100);
      assert.ok(w.every((x) => x.status !== 'pending'));
      assert.ok(w.some((x) => x.status === 'unknown'), `a kill while sending weights leaves them marked unknown:\n${outcomes.join('\n')}`);
      assert.equal(store.lastSentWeights()?.leader_submission_id, rows.find((r) => r.hotkey === 'E')!.id, JSON.stringify(w.slice(0, 4)) + JSON.stringify(journalLines(journal).slice(-12)));
      assert.equal(store.lastSentWeights()?.leader_submission_id, rows.find((r) => r.hotkey === 'E')!.id);
      // eslint-disable-next-line no-console
      console.log(`      ${kills.length} kills, ${restarts} clean restart(s); evaluations started ${starts.length} for ${rows.length} submissions`);
    } finally {
      store.close();
    }
  });

  it('SIGTERM during an evaluation puts it back in the queue without counting the attempt, and exits at once', async () => {
    const { cfg, config, journal } = setup('term', 5000, [['A', 'a'.repeat(100), 10]]);
    const t0 = Date.now();
    const o = await runChild(config, { killOnStart: 1, signal: 'SIGTERM', journal });
    assert.equal(o.code, 143);
    assert.ok(Date.now() - t0 < 4500, 'did not wait for the evaluation to finish');
    const store = ValidatorStore.openReadOnly(cfg.dataDir)!;
    try {
      const [row] = store.recent(1);
      assert.deepEqual([row.state, row.attempts], ['pending', 0]);
      assert.match(store.events(1)[0].message, /stopped by SIGTERM during the evaluation/);
    } finally {
      store.close();
    }
  });
});
