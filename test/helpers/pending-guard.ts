// CI fails on an unexpected pending test. Loaded by mocha before any test file
// (.mocharc.json "require"), it
//  - records why each test or hook skipped: the reason given to skipBecause(),
//    or else the "skipped: <reason>" line the test printed just before
//    this.skip() (the suite's older convention);
//  - after the whole run (a root after-all hook), fails the run when a pending
//    test is not in test/expected-pending.json, or its reason no longer matches
//    the listed one, or it skipped without saying why.
// Subsets (--grep, one file) are checked the same way: only the tests that ran count.
import * as fs from 'fs';
import * as path from 'path';
import type * as MochaTypes from 'mocha';

/** One expected skip: where, which test, and the reason it must give. */
export interface ExpectedPending {
  /** The test file, e.g. "engine-reference.test.ts". */
  file: string;
  /** The test's full title (its suites' titles and its own, space-separated). */
  test: string;
  /** A regular expression the whole printed reason must match. */
  reason: string;
  /** Expected only while this environment variable is set (e.g. ADVERSARIAL_ONLY). */
  only_if_env?: string;
  /** Why this skip is acceptable, for readers. */
  why: string;
}

export interface PendingTest {
  file: string;
  test: string;
  /** null when it skipped without saying why (it.skip, xit, or a bare this.skip()). */
  reason: string | null;
}

/**
 * The problems with a run's pending tests against the allow-list; empty when all
 * is expected. A test may be listed more than once, for different reasons.
 */
export function checkPending(expected: ExpectedPending[], pending: PendingTest[], env: NodeJS.ProcessEnv = process.env): string[] {
  const problems: string[] = [];
  const matches = (e: ExpectedPending, reason: string) => new RegExp(`^(?:${e.reason})$`).test(reason);
  for (const p of pending) {
    const where = `${p.file}: "${p.test}"`;
    const entries = expected.filter((e) => e.file === p.file && e.test === p.test);
    if (p.reason === null) {
      problems.push(`${where} skipped without saying why (use skipBecause(this, reason) from test/helpers/pending-guard)`);
      continue;
    }
    if (entries.length === 0) {
      problems.push(`${where} skipped unexpectedly: ${p.reason}`);
      continue;
    }
    const matching = entries.filter((e) => matches(e, p.reason!));
    if (matching.some((e) => !e.only_if_env || env[e.only_if_env])) continue;
    if (matching.length) {
      problems.push(`${where} skipped (${p.reason}), which is expected only with ${matching.map((e) => e.only_if_env).join(' or ')} set`);
    } else {
      problems.push(`${where} skipped for another reason than the listed one: "${p.reason}" does not match ${entries.map((e) => `/${e.reason}/`).join(' or ')}`);
    }
  }
  return problems;
}

export const EXPECTED_PENDING_FILE = path.join(__dirname, '..', '..', '..', 'test', 'expected-pending.json');

/** Reads and checks the allow-list (TOURNAMENT_EXPECTED_PENDING names another file, for the guard's own test). */
export function loadExpected(file = process.env.TOURNAMENT_EXPECTED_PENDING || EXPECTED_PENDING_FILE): ExpectedPending[] {
  const doc = JSON.parse(fs.readFileSync(file, 'utf8')) as { expected?: unknown };
  if (!Array.isArray(doc.expected)) throw new Error(`${file}: "expected" must be a list`);
  for (const [i, e] of (doc.expected as Record<string, unknown>[]).entries()) {
    for (const k of ['file', 'test', 'reason', 'why']) {
      if (typeof e[k] !== 'string' || !(e[k] as string).length) throw new Error(`${file}: expected[${i}].${k} must be a non-empty string`);
    }
    if (e.only_if_env !== undefined && typeof e.only_if_env !== 'string') throw new Error(`${file}: expected[${i}].only_if_env must be a string`);
    new RegExp(e.reason as string); // throws on a bad pattern
  }
  return doc.expected as ExpectedPending[];
}

// --- recording skip reasons ---

const REASON = Symbol('skip reason');
type WithReason = { [REASON]?: string };
let printed: string | null = null; // the last "skipped: ..." line of the runnable now running

/** A printed line "skipped: X" or "(skipped: X)", indented or not, gives X; any other line null. */
export function reasonFromLine(line: string): string | null {
  const m = /^\s*(\()?skipped: (.*?)\s*$/s.exec(line);
  if (!m) return null;
  return m[1] && m[2].endsWith(')') ? m[2].slice(0, -1) : m[2];
}

/** Skips the running test or hook, saying why; the guard compares the reason with the allow-list. */
export function skipBecause(ctx: MochaTypes.Context, reason: string): never {
  // eslint-disable-next-line no-console
  console.log(`      skipped: ${reason}`);
  const r = ctx.runnable() as unknown as WithReason;
  r[REASON] = reason;
  ctx.skip();
  throw new Error('unreachable');
}

function install(): void {
  // eslint-disable-next-line @typescript-eslint/no-var-requires
  const mocha = require('mocha') as typeof MochaTypes;
  // Every hook and test goes through Runnable#run: the reason it printed is kept
  // when it ends pending (sync, async and done-style skips alike).
  const R = mocha.Runnable.prototype as unknown as { run: (this: WithReason & { pending: boolean }, fn: (err?: unknown) => void) => void };
  const run = R.run;
  R.run = function (fn) {
    printed = null;
    return run.call(this, (err?: unknown) => {
      if (this.pending && this[REASON] === undefined && printed !== null) this[REASON] = printed;
      printed = null;
      fn(err);
    });
  };
  const log = console.log;
  console.log = (...args: unknown[]) => {
    if (typeof args[0] === 'string') printed = reasonFromLine(args[0]) ?? printed;
    return log.apply(console, args);
  };
}

/** A pending test's reason: its own, or that of the nearest suite whose hook skipped. */
function reasonOf(t: MochaTypes.Test): string | null {
  if ((t as unknown as WithReason)[REASON] !== undefined) return (t as unknown as WithReason)[REASON]!;
  for (let s: MochaTypes.Suite | undefined = t.parent; s; s = s.parent) {
    for (const h of [...((s as unknown as { _beforeAll: MochaTypes.Hook[] })._beforeAll ?? []), ...((s as unknown as { _beforeEach: MochaTypes.Hook[] })._beforeEach ?? [])]) {
      if ((h as unknown as WithReason)[REASON] !== undefined) return (h as unknown as WithReason)[REASON]!;
    }
  }
  return null;
}

function pendingTests(root: MochaTypes.Suite): PendingTest[] {
  const out: PendingTest[] = [];
  const walk = (s: MochaTypes.Suite) => {
    for (const t of s.tests) {
      if (t.state !== 'pending') continue;
      let f: MochaTypes.Suite | undefined = s;
      while (f && !f.file) f = f.parent;
      const file = (t.file ?? f?.file ?? '?').replace(/^.*[\\/]/, '').replace(/\.js$/, '.ts');
      out.push({ file, test: t.fullTitle(), reason: reasonOf(t) });
    }
    s.suites.forEach(walk);
  };
  walk(root);
  return out;
}

install();

/** Mocha root hooks: the check after everything ran. */
export const mochaHooks = {
  afterAll: function pendingTestsAllowList(this: MochaTypes.Context) {
    const file = process.env.TOURNAMENT_EXPECTED_PENDING || EXPECTED_PENDING_FILE;
    const problems = checkPending(loadExpected(file), pendingTests(this.test!.parent!));
    if (problems.length) {
      throw new Error(`pending tests that ${path.relative(process.cwd(), file)} does not allow:\n  - ${problems.join('\n  - ')}`);
    }
  },
};
