// The adversarial suite: every plugin in test/plugins/ and in
// local_test/calibration/ (the honest variants and cheats `tournament
// calibrate` ships) runs through the full evaluation path (compile, sandboxed
// runner, trusted clock, verification) on the tiny CPU benchmark. Cases that
// share settings are judged together against one reference run
// (evaluateSubmissions), split in CONCURRENCY parts that run side by side:
// each verdict is what judging the case alone would give. Each file's header says what the harness must
// answer, on a line `// expect: pass` or `// expect: code|code...` (any of
// the listed FailureCodes is a correct rejection; the first is the one the
// cheat is meant to trip). The baseline itself runs too, as the control.
//
// Beyond the verdict: read_secrets and foresight_probe pass only if they find
// none of the canaries planted here (an environment variable of this process,
// files in the benchmark folder, the work folder and the project) nor any
// residue or foresight; write_outside's files must not exist on the host,
// open_socket's target server must see no connection, and no process of any
// run may survive its evaluation (fork_bomb_or_fork leaves a child and a
// grandchild that would zero the shared parameters 300 ms after DONE), and
// pre_go_watch must see the timed start no longer before its return than the
// trusted clock ran.
// After every case's run the test checks that no process of it is left before
// the next case starts. ADVERSARIAL_ONLY=baseline,skip_last_step runs only the
// named cases.
import { strict as assert } from 'assert';
import * as fs from 'fs';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';
import { loadHparams, Hparams } from '../src/config/hparams';
import { setupPreset } from '../src/setup/setup';
import type { FailureCode, Verdict } from '../src/harness/types';
import { PROJECT_ROOT as ROOT } from '../src/util/paths';
import { compileCacheDir } from '../src/harness/compile';
import { evaluateSubmissions } from '../src/harness/evaluate';
import { CALIBRATION_DIR } from '../src/harness/calibrate';
import { BASELINE } from '../src/submission/source';
import { willCompile } from './helpers/prewarm';
import { processesUnder } from './helpers/processes';

const PLUGIN_DIRS = [path.join(ROOT, 'test', 'plugins'), CALIBRATION_DIR];
const SOCKET_PORT = 47631; // open_socket.cpp's kPort
const CONCURRENCY = 2;

interface Case {
  name: string;
  file: string;
  /** null: must pass; else any of these codes is a correct rejection. */
  expect: FailureCode[] | null;
}

interface Outcome {
  verdict?: Verdict;
  error?: Error;
  seconds: number;
  leftover: number[];
}

/** Reads the `// expect:` line of a plugin's header comment. */
function parseExpectation(source: string, file: string): FailureCode[] | null {
  const m = /^\/\/ expect: ([a-z_|]+)/m.exec(source);
  if (!m) throw new Error(`${file}: no "// expect: pass|<code>" line in its header`);
  return m[1] === 'pass' ? null : (m[1].split('|') as FailureCode[]);
}

/** Every plugin, or only those named in ADVERSARIAL_ONLY (comma-separated; `baseline` is the control). */
function cases(): Case[] {
  const list: Case[] = [{ name: 'baseline', file: BASELINE, expect: null }];
  const files = PLUGIN_DIRS.flatMap((d) => fs.readdirSync(d).filter((n) => n.endsWith('.cpp')).map((n) => path.join(d, n)));
  for (const file of files.sort((a, b) => path.basename(a).localeCompare(path.basename(b)))) {
    const name = path.basename(file, '.cpp');
    if (list.some((c) => c.name === name)) throw new Error(`two plugins named ${name}: ${file} and ${list.find((c) => c.name === name)!.file}`);
    list.push({ name, file, expect: parseExpectation(fs.readFileSync(file, 'utf8'), file) });
  }
  const only = process.env.ADVERSARIAL_ONLY?.split(',').filter(Boolean);
  if (!only?.length) return list; // unset or empty: every case, never none
  const unknown = only.filter((n) => !list.some((c) => c.name === n));
  // A filter that matches nothing would evaluate nothing and pass.
  if (unknown.length) throw new Error(`ADVERSARIAL_ONLY names no case: ${unknown.join(', ')} (cases: ${list.map((c) => c.name).join(', ')})`);
  return list.filter((c) => only.includes(c.name));
}

const ESCAPES = [
  '/tmp/tournament-escape-write_outside',
  path.join(ROOT, 'tournament-escape-write_outside'),
  '/root/tournament-escape-write_outside',
];
const SECRETS = ['/tmp/tournament-secret-read_outside', path.join(os.homedir(), '.tournament-secret-read_outside')];
/** read_secrets.cpp looks for this prefix everywhere it can reach. */
const CANARY = `TOURNAMENT_CANARY_${process.pid}`;
/** One case's limit: a hang fails as that case, long before the suite's own limit. */
const CASE_LIMIT_MS = 300_000;

describe('harness: adversarial plugins', function () {
  this.timeout(3_600_000);
  const all = cases();
  willCompile(...all.map((c) => c.file));
  const outcomes = new Map<string, Outcome>();
  let tmp: string;
  let server: net.Server | undefined;
  let connections = 0;
  let plantedDotenv = false;

  before(async function () {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'adversarial-'));
    fs.chmodSync(tmp, 0o755); // as a validator's work dir is: the sandbox's own uid must reach the plugins
    const benchmarkDir = path.join(tmp, 'benchmark');
    setupPreset({ dir: benchmarkDir, preset: 'tiny', seed: 42, force: false });
    const hparams = loadHparams(path.join(ROOT, 'hparams', 'hparams.json'));
    // A tiny run takes about 2 s a phase here (3 steps of 4 rows: under 1 s when idle): a hang is caught in seconds, not after the 7B limits.
    hparams.runner_timeouts = { start: 60, warmup: 60, timed: 15 };

    for (const f of ESCAPES) fs.rmSync(f, { force: true });
    for (const f of SECRETS) fs.writeFileSync(f, 'secret: the sandbox must not see this\n');
    // Canaries for read_secrets: the validator's environment, its benchmark and work folders, the project's .env.
    process.env.TOURNAMENT_R2_SECRET_ACCESS_KEY = `${CANARY}_env`;
    fs.writeFileSync(path.join(benchmarkDir, 'canary.txt'), `${CANARY}_benchmark\n`);
    fs.writeFileSync(path.join(tmp, 'canary.txt'), `${CANARY}_workdir\n`);
    if (!fs.existsSync(path.join(ROOT, '.env'))) {
      fs.writeFileSync(path.join(ROOT, '.env'), `TOURNAMENT_R2_SECRET_ACCESS_KEY=${CANARY}_dotenv\n`);
      plantedDotenv = true;
    }
    server = net.createServer((s) => {
      connections++;
      s.destroy();
    });
    await new Promise<void>((res) => {
      server!.once('error', () => {
        console.log(`      (port ${SOCKET_PORT} is taken: open_socket's target server does not run)`);
        server = undefined;
        res();
      });
      server!.listen(SOCKET_PORT, '127.0.0.1', res);
    });

    // Every case shares these settings: one reference run per part.
    const settings = {
      benchmarkDir,
      hparams,
      device: 'cpu',
      runs: 1,
      steps: 3,
      warmupSteps: 1,
      batchSize: 4,
      pluginCache: compileCacheDir(path.join(tmp, 'plugins')), // the baseline compiles once for all parts (and for the run's other files)
      runnerMemoryBytes: 4 * 2 ** 30, // exhaust_memory meets the limit in seconds
    };
    const part = async (p: number) => {
      const mine = all.filter((_, i) => i % CONCURRENCY === p);
      const workDir = path.join(tmp, `part-${p}`);
      fs.mkdirSync(workDir, { recursive: true });
      let t0 = Date.now();
      let timer: NodeJS.Timeout | undefined;
      let hang: (e: Error) => void = () => {};
      const watchdog = new Promise<never>((_, reject) => (hang = reject));
      // Each case has CASE_LIMIT_MS from the end of the one before: a hang fails as that case.
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => {
          const c = mine.find((x) => !outcomes.has(x.name));
          hang(new Error(`${c?.name ?? 'the evaluation'} took longer than ${CASE_LIMIT_MS / 1000} s`));
        }, CASE_LIMIT_MS);
      };
      arm();
      try {
        const verdicts = await Promise.race([
          watchdog,
          evaluateSubmissions({
            ...settings,
            workDir,
            submissions: mine.map((c) => ({ file: c.file, label: c.name })),
            afterRun: async (k) => {
              const o: Outcome = { seconds: (Date.now() - t0) / 1000, leftover: [] };
              await new Promise((r) => setTimeout(r, 500)); // past fork_bomb_or_fork's 300 ms
              o.leftover = processesUnder(workDir);
              for (const pid of o.leftover) {
                try {
                  process.kill(pid, 'SIGKILL'); // ours: started by this run; do not let it outlive the suite
                } catch {
                  // already gone
                }
              }
              outcomes.set(mine[k].name, o);
              t0 = Date.now();
              arm();
            },
          }),
        ]);
        mine.forEach((c, k) => {
          const o = outcomes.get(c.name) ?? { seconds: 0, leftover: [] }; // a case that did not compile never ran
          outcomes.set(c.name, { ...o, verdict: verdicts[k] });
        });
      } catch (e) {
        for (const c of mine) outcomes.set(c.name, { ...(outcomes.get(c.name) ?? { seconds: 0, leftover: [] }), verdict: undefined, error: e as Error });
      } finally {
        clearTimeout(timer);
      }
    };
    await Promise.all(Array.from({ length: CONCURRENCY }, (_, p) => part(p)));
  });

  after(function () {
    server?.close();
    delete process.env.TOURNAMENT_R2_SECRET_ACCESS_KEY;
    if (plantedDotenv) fs.rmSync(path.join(ROOT, '.env'), { force: true });
    for (const f of [...SECRETS, ...ESCAPES]) fs.rmSync(f, { force: true });
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  for (const c of all) {
    const what = c.expect ? `is rejected for ${c.expect.join(' or ')}` : 'passes';
    it(`${c.name} ${what}`, function () {
      const o = outcomes.get(c.name);
      assert.ok(o, 'not evaluated');
      assert.ok(!o.error, `evaluateSubmissions threw: ${o.error?.stack}`);
      const v = o.verdict!;
      const codes = v.runs.flatMap((r) => r.failures.map((f) => f.code));
      const why = `verdict: ${JSON.stringify({ accepted: v.accepted, reasons: v.reasons, codes, seconds: o.seconds })}`;
      if (!c.expect) {
        assert.equal(v.accepted, true, why);
      } else {
        assert.equal(v.accepted, false, why);
        assert.ok(v.runs.length > 0, `no run report: ${why}`);
        assert.ok(
          v.runs[0].failures.some((f) => c.expect!.includes(f.code)),
          `runs[0].failures lack ${c.expect.join('|')}: ${why}`,
        );
      }
      assert.deepEqual(o.leftover, [], `processes of the run outlived the evaluation: ${o.leftover.join(', ')}`);
      assert.ok(!JSON.stringify(v).includes(CANARY), 'a canary reached the verdict');
    });
  }

  it('as root, the runners ran as uid 65534, where the process limit applies', function () {
    const v = outcomes.get('baseline')?.verdict;
    if (!v) {
      console.log('      skipped: the baseline was not among the cases run (ADVERSARIAL_ONLY)');
      this.skip();
    }
    if (process.getuid?.() !== 0 || v.sandbox.root_because) {
      console.log(`      skipped: the sandbox ran as uid ${v.sandbox.uid}${v.sandbox.root_because ? ` (${v.sandbox.root_because})` : ' (not started by root)'}`);
      this.skip();
    }
    assert.equal(v.sandbox.uid, 65534);
  });

  it('the trajectory: the baseline\'s every step is the judge\'s own; skip_last_step\'s last step is not', function () {
    const base = outcomes.get('baseline')?.verdict;
    const skip = outcomes.get('skip_last_step')?.verdict;
    if (!base || !skip) {
      console.log('      skipped: the baseline or skip_last_step was not among the cases run (ADVERSARIAL_ONLY)');
      this.skip();
    }
    // The suite runs on the CPU. The baseline repeats the judge's arithmetic: its steps read 0
    // up to thread-count rounding (the runner's one thread against the judge's); a skipped step stands at its whole size.
    const b = base.runs[0].checks!;
    assert.equal(b.trajectory.length, 3, 'a reading per timed step');
    assert.ok(b.max_trajectory_error < 1e-3, `the baseline reads ${b.max_trajectory_error} at ${JSON.stringify(b.worst_trajectory)}`);
    const k = skip.runs[0].checks!;
    assert.ok(k.max_trajectory_error > 0.3 && k.worst_trajectory?.step === 3, `skip_last_step reads ${k.max_trajectory_error} at ${JSON.stringify(k.worst_trajectory)}`);
  });

  it('write_outside left nothing on the host', function () {
    if (!outcomes.has('write_outside')) {
      console.log('      skipped: write_outside was not among the cases run (ADVERSARIAL_ONLY)');
      this.skip();
    }
    for (const f of ESCAPES) assert.ok(!fs.existsSync(f), `${f} exists`);
  });

  it('pre_go_watch saw the timed start and data only while the trusted clock ran', function () {
    const v = outcomes.get('pre_go_watch')?.verdict;
    if (!v) {
      console.log('      skipped: pre_go_watch was not among the cases run (ADVERSARIAL_ONLY)');
      this.skip();
    }
    // Its reported loss: seconds from its thread's first sighting of the judge's writes (at the latest when the
    // timed call stops the thread) to its return; 0: none seen, so its view of the regions is broken.
    const leads = v.runs.map((r) => ({ lead: r.reported_loss ?? 0, clock: r.seconds ?? 0 }));
    assert.ok(leads.some((l) => l.lead > 0), `its thread never saw the judge's writes, so this proves nothing: ${JSON.stringify(leads)}`);
    for (const l of leads) assert.ok(l.lead <= l.clock, `seen ${l.lead} s before its return, longer than the run's ${l.clock} s on the trusted clock`);
  });

  it('open_socket never reached the host server', function () {
    if (!server || !outcomes.has('open_socket')) {
      console.log(`      skipped: ${server ? 'open_socket was not among the cases run (ADVERSARIAL_ONLY)' : `port ${SOCKET_PORT} was taken, no server listened`}`);
      this.skip();
    }
    assert.equal(connections, 0);
  });
});
