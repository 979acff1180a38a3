#!/usr/bin/env node
// What each run's seeded perturbation of a checkpoint start does to the loss:
// the baseline judged from a checkpoint with and without it, per seed: the
// probe loss at the start and after training (the reference's), the
// submission's against it, and what copying the checkpoint cost per run.
// Default: the tiny transformers checkpoint (test/fixtures/qwen2-tiny) with
// synthetic tokens, on the CPU; --benchmark-dir: a benchmark with weights
// (e.g. Qwen2.5-7B's from setup-benchmark, on --device cuda). Needs `npm run build`.
//   node scripts/checkpoint-perturbation.js [--seeds 1000,2000] [--steps 5] [--batch 16] [--perturbation P]
//        [--benchmark-dir DIR --device cuda] [--warmup-steps N]
'use strict';
const os = require('os');
const path = require('path');
const fs = require('fs');
const root = path.join(__dirname, '..');
const { evaluateSubmission } = require(path.join(root, 'dist', 'src', 'harness', 'evaluate.js'));
const { BASELINE } = require(path.join(root, 'dist', 'src', 'submission', 'source.js'));
const { loadHparams } = require(path.join(root, 'dist', 'src', 'config', 'hparams.js'));
const { CHECKPOINT_PERTURBATION } = require(path.join(root, 'dist', 'src', 'engine', 'evaluator.js'));
const { makeCheckpointBenchmark } = require(path.join(root, 'dist', 'test', 'helpers', 'checkpoint-bench.js'));

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? dflt : args[i + 1];
};
const hparams = loadHparams(path.join(root, 'hparams', 'hparams.json'));
const seeds = opt('seeds', '1000,2000').split(',').map(Number);
const steps = Number(opt('steps', hparams.eval_steps));
const batch = Number(opt('batch', hparams.benchmark_batch_size));
const perturbation = Number(opt('perturbation', CHECKPOINT_PERTURBATION));
const device = opt('device', 'cpu');
const given = opt('benchmark-dir');
const warmupSteps = Number(opt('warmup-steps', hparams.warmup_steps));
const seqLen = 128; // the fixture's max_position_embeddings

(async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tt-perturbation-'));
  fs.chmodSync(dir, 0o755); // the sandbox's own uid must reach the compiled plugins
  try {
    const bench = given ? path.resolve(given) : path.join(dir, 'benchmark');
    const samples = hparams.verification.probe_rows + (steps + warmupSteps) * batch;
    if (!given) makeCheckpointBenchmark(bench, { samples, seqLen, seed: 7 });
    console.log(`| perturbation | seed | probe loss at the start | after ${steps} steps (reference) | moved | submission − reference | update rel. err | checkpoint copy s/run |`);
    console.log('|---|---|---|---|---|---|---|---|');
    for (const seed of seeds) {
      for (const p of [0, perturbation]) {
        const v = await evaluateSubmission({
          submission: BASELINE, benchmarkDir: bench, hparams, device, runs: 1, steps, warmupSteps,
          batchSize: batch, seed, workDir: path.join(dir, 'work'), checkpointPerturbation: p,
          runnerEnv: device === 'cpu' ? { OMP_NUM_THREADS: '1' } : {},
        });
        const r = v.runs[0];
        const c = r.checks;
        if (!c) throw new Error(`seed ${seed}, perturbation ${p}: ${v.reasons.join('; ')}`);
        const secs = Math.max(...[...v.runs, ...v.reference_runs].map((x) => x.checkpoint_seconds));
        console.log(`| ${p} | ${seed} | ${c.initial_probe_loss.toFixed(6)} | ${c.reference_probe_loss.toFixed(6)} | ${(c.reference_probe_loss - c.initial_probe_loss).toFixed(6)} | ${(c.probe_loss - c.reference_probe_loss).toExponential(2)} | ${c.update_rel_error.toExponential(2)} | ${secs.toFixed(4)} |`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
