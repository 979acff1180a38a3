#!/usr/bin/env node
// Writes a Qwen2.5-7B-shaped benchmark (config only: random init, bf16;
// synthetic tokens) into DIR, so local-bench and noise-floor can run the
// real shape on a GPU without the hub.
//   node scripts/make-7b-benchmark.js DIR [samples]
'use strict';
const fs = require('fs');
const path = require('path');
const dist = path.join(__dirname, '..', 'dist', 'src');
const { syntheticTokens } = require(path.join(dist, 'data', 'synthetic.js'));
const { writeTokens } = require(path.join(dist, 'data', 'tokens.js'));

// Qwen/Qwen2.5-7B's config.json, the fields the engine reads.
const QWEN25_7B = {
  architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_act: 'silu',
  vocab_size: 152064, hidden_size: 3584, intermediate_size: 18944, num_hidden_layers: 28,
  num_attention_heads: 28, num_key_value_heads: 4, max_position_embeddings: 131072,
  rope_theta: 1000000.0, rms_norm_eps: 1e-6, tie_word_embeddings: false, use_sliding_window: false,
};

const [dir = '/tmp/bench7b', samples = '256'] = process.argv.slice(2);
fs.mkdirSync(path.join(dir, 'model'), { recursive: true });
fs.mkdirSync(path.join(dir, 'data'), { recursive: true });
fs.writeFileSync(path.join(dir, 'model', 'config.json'), JSON.stringify(QWEN25_7B, null, 2));
writeTokens(path.join(dir, 'data', 'train.pt'),
  syntheticTokens({ samples: Number(samples), seqLen: 1024, vocabSize: QWEN25_7B.vocab_size, seed: 42 }));
console.log(`wrote a Qwen2.5-7B-shaped benchmark to ${dir}`);
