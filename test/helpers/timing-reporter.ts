// A mocha reporter for measuring the suite: spec's output, then a table of the
// wall time per test file (from its top-level suites' start to their end, hooks
// included) with its pass / fail / pending counts. The before/after figures of
// issue 11 were taken with it:
//   npm run build && npx mocha --reporter dist/test/helpers/timing-reporter.js
// TIMING_OUT=file writes the table there too.
import * as fs from 'fs';
import * as path from 'path';
import type * as MochaTypes from 'mocha';

// eslint-disable-next-line @typescript-eslint/no-var-requires
const { Spec } = (require('mocha') as typeof MochaTypes).reporters;

class TimingReporter extends Spec {
  constructor(runner: MochaTypes.Runner, options?: MochaTypes.MochaOptions) {
    super(runner, options);
    const t0 = Date.now();
    const started = new Map<MochaTypes.Suite, number>();
    const rows = new Map<string, { ms: number; pass: number; fail: number; pending: number }>();
    const name = (f?: string) => (f ? path.basename(f).replace(/\.js$/, '.ts') : '?');
    const row = (f: string) => rows.get(f) ?? rows.set(f, { ms: 0, pass: 0, fail: 0, pending: 0 }).get(f)!;
    const fileOf = (r: MochaTypes.Runnable) => {
      let s: MochaTypes.Suite | undefined = r.parent;
      while (s && !s.file) s = s.parent;
      return name(r.file ?? s?.file);
    };
    runner.on('suite', (s) => {
      if (s.parent?.root && s.file) started.set(s, Date.now());
    });
    runner.on('suite end', (s) => {
      const t = started.get(s);
      if (t !== undefined) row(name(s.file)).ms += Date.now() - t;
    });
    runner.on('pass', (t) => row(fileOf(t)).pass++);
    runner.on('fail', (t) => row(fileOf(t)).fail++);
    runner.on('pending', (t) => row(fileOf(t)).pending++);
    runner.once('end', () => {
      const lines = ['| file | seconds | pass | fail | pending |', '|---|---:|---:|---:|---:|'];
      for (const [f, r] of [...rows].sort((a, b) => b[1].ms - a[1].ms)) lines.push(`| ${f} | ${(r.ms / 1000).toFixed(1)} | ${r.pass} | ${r.fail} | ${r.pending} |`);
      lines.push(`| **total (mocha)** | ${((Date.now() - t0) / 1000).toFixed(1)} | | | |`);
      const table = lines.join('\n') + '\n';
      process.stdout.write(`\n${table}`);
      if (process.env.TIMING_OUT) fs.writeFileSync(process.env.TIMING_OUT, table);
    });
  }
}

export = TimingReporter;
