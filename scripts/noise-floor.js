#!/usr/bin/env node
// Measures the verification noise floor: the baseline against itself (also
// with one CPU thread), honest variants and cheats, each judged against the
// reference on the same seed and data. Prints one markdown table row per
// submission with the numbers the thresholds are set from.
//   node scripts/noise-floor.js [--device cuda] [--benchmark-dir benchmark] [--runs 1]
//        [--steps N] [--batch N] [--warmup-steps N] [--seed N] [case ...]
// A case is a plugin path, `baseline`, or `baseline-1-thread`.
'use strict';
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
const steps = opt('steps');
const batch = opt('batch');
const warmup = opt('warmup-steps');
const seed = Number(opt('seed', '1000'));
const names = args.length ? args : [
  'baseline', 'baseline-1-thread', 'honest_math_attention', 'honest_fp32_loss', 'honest_manual_adamw', 'honest_grad_accum',
  'skip_last_step', 'freeze_layers', 'fewer_tokens', 'stale_logits', 'deferred_thread',
];
const caseOf = (n) =>
  n === 'baseline' ? { name: 'baseline again', file: BASELINE, env: {} }
  : n === 'baseline-1-thread' ? { name: 'baseline, 1 CPU thread', file: BASELINE, env: { OMP_NUM_THREADS: '1' } }
  : { name: path.basename(n, '.cpp'), file: n.endsWith('.cpp') ? n : path.join(root, 'test', 'plugins', `${n}.cpp`), env: {} };

(async () => {
  const hparams = loadHparams(path.join(root, 'hparams', 'hparams.json'));
  // Report everything: thresholds are what is being measured, so none may fail a run here.
  const open = { probe_loss_abs: 1e9, logits_rel_error: 1e9, update_rel_error: 1e9, min_changed_share_ratio: 0, basis: 'open: measuring' };
  hparams.verification = { ...hparams.verification, cpu: open, cuda: open };
  const cases = names.map(caseOf);
  console.log(`device ${device}, seed ${seed}, ${runs} run(s) each, steps ${steps ?? hparams.eval_steps}, batch ${batch ?? hparams.benchmark_batch_size}`);
  console.log('| submission | probe loss - ref | probe loss moved by ref | logits rel. err | update rel. err | max tensor rel. err | changed / ref changed | frozen tensors | run s | overhead s | failures |');
  console.log('|---|---|---|---|---|---|---|---|---|---|---|');
  for (const c of cases) {
    const v = await evaluateSubmission({
      submission: c.file, benchmarkDir, hparams, device, runs,
      steps: Number(steps ?? hparams.eval_steps), warmupSteps: Number(warmup ?? hparams.warmup_steps),
      batchSize: Number(batch ?? hparams.benchmark_batch_size), seed, workDir: path.join(require('os').tmpdir(), 'tournament-noise-floor'),
      submissionEnv: c.env,
    });
    if (c === cases[0]) console.error(`sandbox: ${v.sandbox.bwrap} as uid ${v.sandbox.uid}${v.sandbox.root_because ? ` (root: ${v.sandbox.root_because})` : ''}`);
    for (const r of v.runs) {
      const k = r.checks;
      const f = (x) => (x === undefined || x === null ? '-' : Number.isFinite(x) ? x.toPrecision(3) : String(x));
      if (!k) { console.log(`| ${c.name} | failed: ${r.failures.map((x) => x.code).join(', ')} | | | | | | | | | |`); continue; }
      console.log(`| ${c.name} | ${f(k.probe_loss - k.reference_probe_loss)} | ${f(k.reference_probe_loss - k.initial_probe_loss)} | ${f(k.logits_rel_error)} | ${f(k.update_rel_error)} | ${f(k.max_tensor_rel_error)} | ${f(k.changed_share / k.reference_changed_share)} | ${k.frozen_tensors.length} | ${f(r.seconds)} | ${f(r.overhead_seconds)} | ${r.failures.map((x) => x.code).join(', ') || '-'} |`);
    }
  }
})().catch((e) => { console.error(e.message || e); process.exit(1); });
