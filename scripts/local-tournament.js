#!/usr/bin/env node
// A whole tournament on this machine, on the CPU, in a few minutes: three
// miners submit on the local network (commitments in .local_commitments/,
// code in .local_storage/, 1-second blocks), the validator evaluates them
// through the trusted harness, rejects the cheater with its reason, picks the
// leader and records weights; `status` shows the outcome. Everything happens
// in DIR (default: local-tournament/ in the checkout, recreated), with
// bin/tournament commands exactly as a miner and a validator type them.
//
//   node scripts/local-tournament.js [DIR] [--steps submit,evaluate,status]
//
// The miners: `baseline` (local_test/train.cpp as it is), `variant` (the
// baseline with one change a miner would make on the CPU, below: same
// arithmetic, so the same weights bit for bit, about 1.25x the tokens/s) and
// `cheater` (skips the optimizer step on the last batch). Settings: hparams/hparams.json with
// shorter runs and delays (written to DIR/hparams.json).
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const path = require('path');

const ROOT = path.join(__dirname, '..');
const BIN = path.join(ROOT, 'bin', 'tournament');
const args = process.argv.slice(2);
const stepsAt = args.indexOf('--steps');
const steps = stepsAt >= 0 ? args.splice(stepsAt, 2)[1].split(',') : ['submit', 'evaluate', 'status'];
const DIR = path.resolve(args[0] || path.join(ROOT, 'local-tournament'));

const BASELINE = path.join(ROOT, 'local_test', 'train.cpp');
const MINERS = [
  ['baseline', () => fs.readFileSync(BASELINE, 'utf8'), 'local_test/train.cpp'],
  ['variant', fasterVariant, 'local_test/train.cpp, made faster on the CPU'],
  ['cheater', () => fs.readFileSync(path.join(ROOT, 'local_test', 'calibration', 'skip_last_step.cpp'), 'utf8'), 'local_test/calibration/skip_last_step.cpp'],
];

/**
 * The baseline with glibc told to keep freed memory in its heap. By default
 * every block over 128 KiB is mmap'd when allocated and returned to the kernel
 * when freed, so each step's large CPU tensors (the loss head's float32
 * logits, the MLP's activations) are page-faulted in afresh: about a quarter
 * of a step on the tiny model. The arithmetic is untouched.
 */
function fasterVariant() {
  const source = fs.readFileSync(BASELINE, 'utf8');
  const include = '#include <algorithm>\n';
  const body = /(TrainResult inner_steps\([^{]*\{\n)/;
  if (!source.includes(include) || !body.test(source)) {
    throw new Error(`${path.relative(ROOT, BASELINE)} no longer has the lines the variant edits (${JSON.stringify(include)}, the opening of inner_steps): update fasterVariant() in this script`);
  }
  return source
    .replace(include, `${include}#include <malloc.h>\n`)
    .replace(body, '$1  // Keep freed memory in the heap: large tensors are not page-faulted in again every step.\n  mallopt(M_MMAP_THRESHOLD, 1 << 30);\n  mallopt(M_TRIM_THRESHOLD, 1 << 30);\n');
}
const BLOCK_SECONDS = 1;
const env = { ...process.env, TOURNAMENT_LOCAL_BLOCK_TIME: String(BLOCK_SECONDS) };

function say(text) {
  process.stderr.write(`\n== ${text}\n`);
}

function tournament(argv, { capture = false } = {}) {
  process.stderr.write(`$ tournament ${argv.join(' ')}\n`);
  return execFileSync(process.execPath, [BIN, ...argv], { cwd: DIR, env, stdio: ['ignore', capture ? 'pipe' : 'inherit', 'inherit'], encoding: 'utf8' });
}

/** A hotkey file as btcli writes it (wallets/NAME/hotkeys/default). */
async function makeHotkey(name) {
  const { Keyring } = require('@polkadot/keyring');
  const { cryptoWaitReady, mnemonicGenerate } = require('@polkadot/util-crypto');
  await cryptoWaitReady();
  const secretPhrase = mnemonicGenerate();
  const pair = new Keyring({ type: 'sr25519', ss58Format: 42 }).addFromUri(secretPhrase);
  const file = path.join(DIR, 'wallets', name, 'hotkeys', 'default');
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, JSON.stringify({ secretPhrase, ss58Address: pair.address }), { mode: 0o600 });
  return pair.address;
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function submit() {
  say(`a fresh local network in ${DIR}`);
  fs.rmSync(DIR, { recursive: true, force: true });
  fs.mkdirSync(DIR, { recursive: true });
  const hp = JSON.parse(fs.readFileSync(path.join(ROOT, 'hparams', 'hparams.json'), 'utf8'));
  // Short runs and short delays; everything else (thresholds included) as the tournament has it.
  // Weights every 2 blocks, so the last ones follow the final leader. burn_uid 99: a uid no local miner has (the local network numbers hotkeys 0, 1, 2 as they first commit).
  Object.assign(hp, { eval_steps: 3, warmup_steps: 1, benchmark_batch_size: 8, evaluation_runs: 2, reveal_blocks: 3, min_blocks_between_commits: 5, set_weights_interval_blocks: 2, burn_uid: 99 });
  fs.writeFileSync(path.join(DIR, 'hparams.json'), JSON.stringify(hp, null, 2) + '\n');
  if (!fs.existsSync(path.join(ROOT, 'benchmark', 'data', 'train.pt'))) {
    say('the tiny CPU benchmark');
    execFileSync(process.execPath, [BIN, 'setup-benchmark', '--preset', 'tiny'], { cwd: ROOT, stdio: 'inherit' });
  }
  for (const [name, source, what] of MINERS) {
    say(`miner "${name}" submits ${what}`);
    await makeHotkey(name);
    fs.writeFileSync(path.join(DIR, `${name}.cpp`), source());
    tournament(['miner', 'submit', `${name}.cpp`, '--network', 'local', '--hparams', 'hparams.json', '--wallet.path', 'wallets', '--wallet.name', name, '--wallet.hotkey', 'default']);
  }
  say(`waiting ${hp.reveal_blocks} blocks for the commitments to be revealed`);
  await sleep((hp.reveal_blocks + 1) * BLOCK_SECONDS * 1000);
}

function evaluate() {
  say('the validator: one pass over the revealed submissions (compiles each, runs it against the reference, verifies)');
  tournament(['evaluate', '--network', 'local', '--once', '--hparams', 'hparams.json', '--benchmark-dir', path.join(ROOT, 'benchmark'), '--device', 'cpu']);
}

function status() {
  say('the outcome');
  tournament(['status', '--hparams', 'hparams.json']);
  process.stderr.write(`\nEverything is in ${DIR}: validator-data/validator.sqlite, .local_commitments/, .local_storage/.\n`);
}

(async () => {
  for (const s of steps) {
    if (s === 'submit') await submit();
    else if (s === 'evaluate') evaluate();
    else if (s === 'status') status();
    else throw new Error(`unknown step ${s}: use submit, evaluate, status`);
  }
})().catch((e) => {
  process.stderr.write(`local tournament failed: ${e.message}\n`);
  process.exit(1);
});
