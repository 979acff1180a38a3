#!/usr/bin/env node
// Writes a random bf16 checkpoint for the benchmark's model config into its
// model folder, sharded as the Hugging Face hub shards Qwen2.5-7B
// (model-0000K-of-0000N.safetensors + model.safetensors.index.json). FOR THE
// MECHANICS ONLY (load time, the per-run copy, memory): the weights are noise,
// so losses say nothing about a real checkpoint. Needs `npm run build`.
//   node scripts/make-checkpoint.js [--benchmark-dir benchmark] [--shards 4] [--seed 1]
// e.g. on the GPU host: bin/tournament setup-benchmark --preset 7b-shape --benchmark-dir /tmp/bench7b
//   && node scripts/make-checkpoint.js --benchmark-dir /tmp/bench7b   (15.2 GB for Qwen2.5-7B)
// Values: normal(0, 0.02) for weights (from one 64 MB pool of draws, read at
// a random offset per tensor: fast, and random enough for the mechanics),
// ones for the norms, zeros for the biases, as a fresh initialisation.
'use strict';
const fs = require('fs');
const path = require('path');
const root = path.join(__dirname, '..');
const { readQwen2Config } = require(path.join(root, 'dist', 'src', 'engine', 'config.js'));
const { loadAddon } = require(path.join(root, 'dist', 'src', 'engine', 'native.js'));
const { safetensorsHeader } = require(path.join(root, 'dist', 'src', 'engine', 'safetensors.js'));
const { CONFIG_PATH } = require(path.join(root, 'dist', 'src', 'util', 'paths.js'));

const args = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = args.indexOf(`--${name}`);
  return i < 0 ? dflt : args[i + 1];
};
const benchmarkDir = path.resolve(opt('benchmark-dir', path.join(root, 'benchmark')));
const shards = Number(opt('shards', '4'));
let state = (Number(opt('seed', '1')) | 1) >>> 0;

const configFile = path.join(benchmarkDir, CONFIG_PATH);
const modelDir = path.dirname(configFile);
const config = readQwen2Config(configFile);
const specs = loadAddon().parameterSpecs(config);

// xorshift32: seeded and fast; uniform in (0, 1].
const next = () => {
  state ^= state << 13;
  state ^= state >>> 17;
  state ^= state << 5;
  state >>>= 0;
  return (state + 1) / 2 ** 32;
};
const POOL = 32 * 2 ** 20; // bf16 values
const pool = Buffer.alloc(2 * POOL);
{
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  for (let i = 0; i < POOL; i += 2) {
    // Box-Muller: two normals per pair of uniforms.
    const r = 0.02 * Math.sqrt(-2 * Math.log(next()));
    const t = 2 * Math.PI * next();
    for (const [k, v] of [[0, r * Math.cos(t)], [1, r * Math.sin(t)]]) {
      f[0] = v;
      pool.writeUInt16LE(u[0] >>> 16, 2 * (i + k)); // bf16: the float32's high half
    }
  }
}
const ONE = 0x3f80; // 1.0 in bf16

const tensors = specs.map((s) => ({ ...s, nbytes: 2 * s.shape.reduce((a, b) => a * b, 1) }));
const total = tensors.reduce((a, t) => a + t.nbytes, 0);
// Whole tensors per shard, about total / shards bytes each, in the model's order.
const groups = [[]];
let filled = 0;
for (const t of tensors) {
  if (filled >= (total / shards) * groups.length && groups.length < shards) groups.push([]);
  groups[groups.length - 1].push(t);
  filled += t.nbytes;
}
const n = groups.length;
const name = (k) => `model-${String(k + 1).padStart(5, '0')}-of-${String(n).padStart(5, '0')}.safetensors`;
const weightMap = {};
const started = Date.now();
for (const [k, group] of groups.entries()) {
  const file = path.join(modelDir, name(k));
  const fd = fs.openSync(`${file}.tmp`, 'w');
  fs.writeSync(fd, safetensorsHeader(group.map((t) => ({ name: t.name, dtype: 'BF16', shape: t.shape, nbytes: t.nbytes }))));
  const block = Buffer.alloc(Math.min(64 * 2 ** 20, pool.length));
  for (const t of group) {
    weightMap[t.name] = name(k);
    const kind = /norm\.weight$/.test(t.name) ? 'one' : /\.bias$/.test(t.name) ? 'zero' : 'normal';
    const fill = Math.min(t.nbytes, block.length);
    if (kind === 'one') for (let i = 0; i < fill; i += 2) block.writeUInt16LE(ONE, i);
    else if (kind === 'zero') block.fill(0, 0, fill);
    let at = (Math.floor(next() * POOL) % POOL) * 2;
    for (let left = t.nbytes; left > 0; ) {
      let len = Math.min(left, block.length);
      if (kind === 'normal') {
        len = Math.min(len, pool.length - at);
        fs.writeSync(fd, pool, at, len);
        at = (at + len) % pool.length;
      } else {
        fs.writeSync(fd, block, 0, len);
      }
      left -= len;
    }
  }
  fs.closeSync(fd);
  fs.renameSync(`${file}.tmp`, file);
  process.stderr.write(`${name(k)}: ${group.length} tensors\n`);
}
fs.writeFileSync(path.join(modelDir, 'model.safetensors.index.json'), JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2));
console.log(`${modelDir}: ${tensors.length} tensors, ${(total / 1e9).toFixed(2)} GB bf16 in ${n} shards, ${((Date.now() - started) / 1000).toFixed(1)} s`);
