// The guard that fails a run on an unexpected pending test (test/helpers/pending-guard.ts,
// loaded by .mocharc.json): its matching rules, the allow-list's own validity, and
// a real mocha run with and without unexpected skips.
import { strict as assert } from 'assert';
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { checkPending, ExpectedPending, loadExpected, reasonFromLine } from './helpers/pending-guard';
import { PROJECT_ROOT } from '../src/util/paths';
import { tmpDir } from './helpers/tmp';

const E: ExpectedPending = { file: 'a.test.ts', test: 'suite gpu test', reason: 'no GPU \\(.+\\)', why: 'CI has none' };

describe('pending-test guard', function () {
  it('accepts an expected skip whose reason matches, refuses an unlisted, a changed and an unexplained one', function () {
    assert.deepEqual(checkPending([E], [{ file: 'a.test.ts', test: 'suite gpu test', reason: 'no GPU (cpu only)' }], {}), []);
    const problems = checkPending(
      [E],
      [
        { file: 'a.test.ts', test: 'suite gpu test', reason: 'no GPU' },
        { file: 'b.test.ts', test: 'suite gpu test', reason: 'no GPU (cpu only)' },
        { file: 'a.test.ts', test: 'suite other', reason: 'x' },
        { file: 'a.test.ts', test: 'suite bare', reason: null },
      ],
      {},
    );
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.match(problems[0], /"suite gpu test" skipped for another reason than the listed one: "no GPU" does not match/);
    assert.match(problems[1], /^b\.test\.ts: "suite gpu test" skipped unexpectedly: no GPU \(cpu only\)$/);
    assert.match(problems[2], /"suite other" skipped unexpectedly: x$/);
    assert.match(problems[3], /"suite bare" skipped without saying why/);
  });

  it('the whole reason must match, and only_if_env limits an entry to runs with that variable set', function () {
    assert.equal(checkPending([E], [{ file: 'a.test.ts', test: 'suite gpu test', reason: 'no GPU (x) after all' }], {}).length, 1);
    const subset = { ...E, only_if_env: 'ADVERSARIAL_ONLY' };
    const p = { file: 'a.test.ts', test: 'suite gpu test', reason: 'no GPU (x)' };
    assert.match(checkPending([subset], [p], {})[0], /expected only with ADVERSARIAL_ONLY set/);
    assert.deepEqual(checkPending([subset], [p], { ADVERSARIAL_ONLY: 'baseline' }), []);
  });

  it('reads a reason from the line a test prints before this.skip()', function () {
    assert.equal(reasonFromLine('      (skipped: /x is absent; not here)'), '/x is absent; not here');
    assert.equal(reasonFromLine('    skipped: this build (1.13.0) has no sdpa'), 'this build (1.13.0) has no sdpa');
    assert.equal(reasonFromLine('compile: skipped: --no-compile'), null);
    assert.equal(reasonFromLine('nothing'), null);
  });

  it('test/expected-pending.json is well formed and names files that exist', function () {
    for (const e of loadExpected()) assert.ok(fs.existsSync(path.join(PROJECT_ROOT, 'test', e.file)), `${e.file} (in the allow-list) does not exist`);
  });

  describe('in a real mocha run', function () {
    this.timeout(60000);
    let dir: string;
    const spec = (bare: boolean) => `
      describe('outer', function () {
        it('runs', function () {});
        it('needs a gpu', function () { console.log('      skipped: no GPU here'); this.skip(); });
        it('waits', function (done) { console.log('skipped: done-style'); setTimeout(() => this.skip(), 1); });
        describe('hooked', function () {
          before(function () { console.log('      (skipped: fixture absent)'); this.skip(); });
          it('inner', function () {});
        });
        ${bare ? "it('bare', function () { this.skip(); });" : ''}
      });`;
    function mocha(file: string, expected: object[]): { status: number | null; out: string } {
      const list = path.join(dir, `${file}.list.json`);
      fs.writeFileSync(list, JSON.stringify({ expected }));
      const r = spawnSync(
        process.execPath,
        [path.join(PROJECT_ROOT, 'node_modules', 'mocha', 'bin', 'mocha.js'), '--no-config', '--require', path.join(__dirname, 'helpers', 'pending-guard.js'), path.join(dir, `${file}.js`)],
        { encoding: 'utf8', env: { ...process.env, TOURNAMENT_EXPECTED_PENDING: list }, cwd: dir },
      );
      return { status: r.status, out: r.stdout + r.stderr };
    }
    const entry = (file: string, test: string, reason: string) => ({ file: `${file}.ts`, test, reason, why: 'test' });
    before(function () {
      dir = tmpDir('pending-guard');
      fs.writeFileSync(path.join(dir, 'good.js'), spec(false));
      fs.writeFileSync(path.join(dir, 'bad.js'), spec(true));
    });

    it('passes when every skip is listed with its reason, skips in a before hook and a done-style test included', function () {
      const r = mocha('good', [entry('good', 'outer needs a gpu', 'no GPU here'), entry('good', 'outer waits', 'done-style'), entry('good', 'outer hooked inner', 'fixture absent')]);
      assert.equal(r.status, 0, r.out);
      assert.match(r.out, /1 passing[\s\S]*3 pending/);
    });

    it('fails the run, naming each test, when a skip is unlisted, its reason changed, or it gave none', function () {
      const r = mocha('bad', [entry('bad', 'outer needs a gpu', 'no GPU anywhere'), entry('bad', 'outer bare', '.*')]);
      assert.notEqual(r.status, 0, r.out);
      assert.match(r.out, /"after all" hook: pendingTestsAllowList[\s\S]*pending tests that bad\.list\.json does not allow:/);
      assert.match(r.out, /"outer needs a gpu" skipped for another reason than the listed one: "no GPU here"/);
      assert.match(r.out, /"outer hooked inner" skipped unexpectedly: fixture absent/);
      assert.match(r.out, /"outer bare" skipped without saying why/);
    });
  });
});
