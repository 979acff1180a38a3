#!/usr/bin/env node
// Measures the verification noise floor and the price of the tolerance: the
// baseline against itself (also with one CPU thread), honest variants and
// cheats, each judged against the reference on the same seed and data, over
// one or more seeds. Prints one markdown row per run with the numbers the
// thresholds are set from, then one row per case: the share of the work it
// skips (drop cases), and its worst run against the thresholds in force
// (honest: the largest check / threshold; cheat: the run that came closest to
// passing, i.e. the smallest of its largest check / threshold; > 1 rejects).
//   node scripts/noise-floor.js [--device cuda] [--benchmark-dir benchmark] [--runs 1]
//        [--steps N] [--batch N] [--warmup-steps N] [--seeds 1000,2000,3000] [--threads N] [case ...]
// A case is a plugin path, a name in test/plugins, `baseline`, `baseline-1-thread`,
// or `drop:every:K` / `drop:last:K` (test/plugins/drop_rows.cpp: K rows of
// every batch, or of the last batch only, never trained on).
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const root = path.join(__dirname, '..');
const { evaluateSubmission } = require(path.join(root, 'dist', 'src', 'harness', 'evaluate.js'));
const { BASELINE } = require(path.join(root, 'dist', 'src', 'submission', 'source.js'));
const { loadHparams } = require(path.join(root, 'dist', 'src', 'config', 'hparams.js'));

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = args[i + 1];
  args.splice(i, 2);
  return v;
};
const device = opt('device', 'cpu');
const benchmarkDir = opt('benchmark-dir', path.join(root, 'benchmark'));
const runs = Number(opt('runs', '1'));
const seeds = opt('seeds', opt('seed', '1000')).split(',').map(Number);
// Every runner's CPU threads (OMP_NUM_THREADS): 1 keeps a shared machine from oversubscribing.
const threads = opt('threads');
const hparams = loadHparams(path.join(root, 'hparams', 'hparams.json'));
const steps = Number(opt('steps', hparams.eval_steps));
const batch = Number(opt('batch', hparams.benchmark_batch_size));
const warmup = Number(opt('warmup-steps', hparams.warmup_steps));
const names = args.length ? args : [
  'baseline', 'baseline-1-thread', 'honest_math_attention', 'honest_fp32_loss', 'honest_manual_adamw', 'honest_grad_accum',
  'skip_last_step', 'freeze_layers', 'fewer_tokens', 'stale_logits', 'deferred_thread',
];
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tournament-noise-floor-'));
fs.chmodSync(work, 0o755);

function caseOf(n) {
  if (n === 'baseline') return { name: 'baseline again', file: BASELINE, env: {}, honest: true };
  if (n === 'baseline-1-thread') return { name: 'baseline, 1 CPU thread', file: BASELINE, env: { OMP_NUM_THREADS: '1' }, honest: true };
  const drop = /^drop:(every|last):(\d+)$/.exec(n);
  if (drop) {
    const k = Number(drop[2]);
    const every = drop[1] === 'every';
    const file = path.join(work, `drop_${drop[1]}_${k}.cpp`);
    const src = fs.readFileSync(path.join(root, 'test', 'plugins', 'drop_rows.cpp'), 'utf8');
    fs.writeFileSync(file, `#define DROP_ROWS ${k}\n#define DROP_MODE ${every ? 0 : 1}\n${src}`);
    const share = every ? k / batch : k / (batch * steps);
    return { name: `drop ${k} row(s) of ${every ? 'every batch' : 'the last batch'}`, file, env: {}, honest: false, share };
  }
  const file = n.endsWith('.cpp') ? n : path.join(root, 'test', 'plugins', `${n}.cpp`);
  return { name: path.basename(n, '.cpp'), file, env: {}, honest: /^honest_/.test(path.basename(file)) };
}

(async () => {
  const v0 = device.startsWith('cuda') ? hparams.verification.cuda : hparams.verification.cpu;
  // Report everything: thresholds are what is being measured, so none may fail a run here.
  const open = { probe_loss_abs: 1e9, row_loss_abs: 1e9, logits_rel_error: 1e9, update_rel_error: 1e9, min_changed_share_ratio: 0, basis: 'open: measuring' };
  const measuring = { ...hparams, verification: { ...hparams.verification, cpu: open, cuda: open } };
  const cases = names.map(caseOf);
  const f = (x) => (x === undefined || x === null ? '-' : Number.isFinite(x) ? x.toPrecision(3) : String(x));
  console.log(`device ${device}, seeds ${seeds.join(', ')}, ${runs} run(s) each, steps ${steps}, batch ${batch}, warmup ${warmup}; thresholds: probe ${v0.probe_loss_abs}, row ${v0.row_loss_abs}, logits ${v0.logits_rel_error}, update ${v0.update_rel_error}, changed share ${v0.min_changed_share_ratio}`);
  console.log('| submission | seed | probe loss - ref | probe loss moved by ref | row loss dev. | logits rel. err | update rel. err | max tensor rel. err | changed / ref changed | frozen tensors | run s | overhead s | failures |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|---|---|');
  const summary = [];
  for (const c of cases) {
    const ratios = [];
    for (const seed of seeds) {
      const v = await evaluateSubmission({
        submission: c.file, benchmarkDir, hparams: measuring, device, runs, steps, warmupSteps: warmup, batchSize: batch,
        seed, workDir: work, submissionEnv: c.env, runnerEnv: threads ? { OMP_NUM_THREADS: threads } : {},
      });
      if (c === cases[0] && seed === seeds[0]) console.error(`sandbox: ${v.sandbox.bwrap} as uid ${v.sandbox.uid}${v.sandbox.root_because ? ` (root: ${v.sandbox.root_because})` : ''}`);
      for (const r of v.runs) {
        const k = r.checks;
        if (!k) {
          console.log(`| ${c.name} | ${r.seed} | failed: ${r.failures.map((x) => `${x.code}: ${x.message}`).join('; ')} | | | | | | | | | | |`);
          ratios.push(Infinity);
          continue;
        }
        const changed = k.changed_share / k.reference_changed_share;
        // Each check as a multiple of its threshold (> 1 fails the run).
        const worst = Math.max(
          Math.abs(k.probe_loss - k.reference_probe_loss) / v0.probe_loss_abs,
          k.row_loss_deviation / v0.row_loss_abs,
          k.logits_rel_error / v0.logits_rel_error,
          k.update_rel_error / v0.update_rel_error,
          k.frozen_tensors.length > 0 ? Infinity : 0,
          changed < v0.min_changed_share_ratio ? Infinity : 0,
        );
        ratios.push(worst);
        console.log(`| ${c.name} | ${r.seed} | ${f(k.probe_loss - k.reference_probe_loss)} | ${f(k.reference_probe_loss - k.initial_probe_loss)} | ${f(k.row_loss_deviation)} | ${f(k.logits_rel_error)} | ${f(k.update_rel_error)} | ${f(k.max_tensor_rel_error)} | ${f(changed)} | ${k.frozen_tensors.length} | ${f(r.seconds)} | ${f(r.overhead_seconds)} | ${r.failures.map((x) => x.code).join(', ') || '-'} |`);
      }
    }
    summary.push({ c, worst: c.honest ? Math.max(...ratios) : Math.min(...ratios), n: ratios.length });
  }
  console.log('\n| case | share of the work skipped | runs | worst run: largest check / threshold | verdict in every run |');
  console.log('|---|---|---|---|---|');
  for (const { c, worst, n } of summary) {
    const verdict = worst > 1 ? 'rejected' : 'accepted';
    const share = c.share === undefined ? '-' : `${(c.share * 100).toFixed(2)}%`;
    console.log(`| ${c.name} | ${share} | ${n} | ${f(worst)} | ${verdict}${c.honest ? (worst <= 0.5 ? ' (2x margin)' : ' (margin < 2x)') : ''} |`);
  }
  fs.rmSync(work, { recursive: true, force: true });
})().catch((e) => { console.error(e.message || e); process.exit(1); });
