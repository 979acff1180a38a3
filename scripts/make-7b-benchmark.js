#!/usr/bin/env node
// Qwen2.5-7B-shaped local benchmark on the GPU: random init, bf16, synthetic
// tokens; prints the result as JSON. Uses the built dist/ and build/ directly.
//   node scripts/gpu-bench.js DIR [steps] [batch] [attention]
'use strict';
const fs = require('fs');
const path = require('path');
const dist = path.join(__dirname, '..', 'dist', 'src');
const { runLocalBench } = require(path.join(dist, 'engine', 'bench.js'));
const { syntheticTokens } = require(path.join(dist, 'data', 'synthetic.js'));
const { writeTokens } = require(path.join(dist, 'data', 'tokens.js'));
const { loadHparams } = require(path.join(dist, 'config', 'hparams.js'));

// Qwen/Qwen2.5-7B's config.json, the fields the engine reads.
const QWEN25_7B = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_act: 'silu',
  vocab_size: 152064, hidden_size: 3584, intermediate_size: 18944, num_hidden_layers: 28,
  num_attention_heads: 28, num_key_value_heads: 4, max_position_embeddings: 131072,
  rope_theta: 1000000.0, rms_norm_eps: 1e-6, tie_word_embeddings: false, use_sliding_window: false,
};

async function main() {
  const [dir = '/tmp/bench7b', steps = '3', batch = '16', attention = 'auto'] = process.argv.slice(2);
  fs.mkdirSync(path.join(dir, 'model'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'model', 'config.json'), JSON.stringify(QWEN25_7B));
  const b = Number(batch), s = Number(steps), warmup = 1;
  writeTokens(path.join(dir, 'data', 'train.pt'),
    syntheticTokens({ samples: b * (s + warmup), seqLen: 1024, vocabSize: QWEN25_7B.vocab_size, seed: 42 }));
  const r = await runLocalBench({
    benchmarkDir: dir, hparams: loadHparams(path.join(__dirname, '..', 'hparams', 'hparams.json')),
    device: 'cuda', dtype: 'bfloat16', attention, steps: s, warmupSteps: warmup, batchSize: b, seed: 1234,
    peakTflops: 790, onNote: (t) => console.error(t),
    onProgress: (p, d, t) => console.error(`${p} ${d}/${t}`),
  });
  console.log(JSON.stringify(r));
}
main().catch((e) => { console.error(e); process.exit(1); });
