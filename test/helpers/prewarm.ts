// Compiles, in the background from the start of the mocha run, the plugins the
// heavy test files will compile, so that the CPU the light files leave idle
// goes into them (issue 11: a cold `npm test` was mostly compiling). A test
// file names what it will compile at load time with willCompile(); the root
// hook below then starts one child process that compiles them one at a time,
// in the files' order. .mocharc.json runs the files that compile last, the
// one with the most plugins (harness-adversarial) at the end of them, and then
// sandbox.test.ts: its root test counts the sandbox uid's tasks, which a
// background compile would add to.
//
// It changes no result: the child compiles through compileCached into the
// run's content-addressed cache (test/helpers/compile-cache.ts), as the tests
// do; a test finds the plugin there, or waits for the compile in flight
// (compileCached waits for another live process making the same entry). A
// source that does not compile leaves nothing: the test compiles it and sees
// the error. A child process, not this one: a test blocked in spawnSync must
// not hold up a compile that its own child waits for.
// TOURNAMENT_TEST_PREWARM=0 turns it off (to compare timings).
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { checkSubmission, compileCached } from '../../src/harness/compile';
import { tmpDir } from './tmp';

const queue: string[] = [];
let sourcesDir: string | undefined;
let child: ChildProcess | undefined;
let exited: Promise<void> | undefined;

/** Sources (paths, or `{ text }` for a source the test writes itself) this file will compile: queued for the background. */
export function willCompile(...sources: (string | { text: string })[]): void {
  for (const s of sources) {
    let file: string;
    if (typeof s === 'string') {
      file = path.resolve(s);
    } else {
      sourcesDir ??= tmpDir('prewarm');
      file = path.join(sourcesDir, `source-${queue.length}.cpp`);
      fs.writeFileSync(file, s.text);
    }
    if (!queue.includes(file)) queue.push(file);
  }
}

/** The child: compiles each file named on its command line into $TOURNAMENT_COMPILE_CACHE, in order. */
async function main(files: string[]): Promise<void> {
  const cacheDir = process.env.TOURNAMENT_COMPILE_CACHE!;
  // Stopped at the end of the run: leave no scratch folder of ours (bwrap dies with us: --die-with-parent).
  process.once('SIGTERM', () => {
    for (const n of fs.readdirSync(cacheDir)) if (n.endsWith(`.tmp-${process.pid}`)) fs.rmSync(path.join(cacheDir, n), { recursive: true, force: true });
    process.exit(143);
  });
  for (const file of files) {
    const checked = checkSubmission(file);
    if (!checked.ok) continue; // refused before compiling: the test says why
    await compileCached(checked.source, { cacheDir }).catch(() => undefined); // an error is the test's to report
  }
}

const built = () => fs.existsSync(path.join(__dirname, '..', '..', '..', 'build', 'Release', 'plugin_build.json'));

/** Mocha root hooks: start the child once the files are loaded; let no compile outlive the run. */
export const mochaHooks = {
  beforeAll: function startPrewarm() {
    // Only into the run's shared cache (compile-cache.ts, loaded before this): a plugin nobody finds is wasted work.
    if (process.env.TOURNAMENT_TEST_PREWARM === '0' || !process.env.TOURNAMENT_COMPILE_CACHE || !queue.length || !built()) return;
    child = spawn(process.execPath, [__filename, ...queue], { stdio: ['ignore', 'ignore', 'inherit'] });
    exited = new Promise((resolve) => child!.once('exit', () => resolve()));
  },
  afterAll: async function stopPrewarm(this: Mocha.Context) {
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    this.timeout(30_000);
    child.kill('SIGTERM'); // everything it compiles, the tests have compiled by now; a leftover is not needed
    await exited;
  },
};

if (require.main === module) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (e) => {
      console.error(`prewarm: ${(e as Error).stack}`);
      process.exit(1);
    },
  );
}
