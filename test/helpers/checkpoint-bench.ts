// A benchmark folder whose model is test/fixtures/qwen2-tiny (its config and
// its transformers-made weights) with synthetic tokens in its vocabulary:
// what a setup-benchmark with weights gives, in small. Used by the checkpoint
// test and scripts/checkpoint-perturbation.js.
import * as fs from 'fs';
import * as path from 'path';
import { readQwen2Config } from '../../src/engine/config';
import { syntheticTokens } from '../../src/data/synthetic';
import { writeTokens } from '../../src/data/tokens';
import { CONFIG_PATH, DATA_PATH, PROJECT_ROOT } from '../../src/util/paths';

export const QWEN2_TINY = path.join(PROJECT_ROOT, 'test', 'fixtures', 'qwen2-tiny');

/** Writes the benchmark into `dir` (model/config.json, model/model.safetensors, data/train.pt); returns the model folder. */
export function makeCheckpointBenchmark(dir: string, o: { samples: number; seqLen: number; seed: number }): string {
  const modelDir = path.dirname(path.join(dir, CONFIG_PATH));
  fs.mkdirSync(modelDir, { recursive: true });
  for (const f of ['config.json', 'model.safetensors']) fs.copyFileSync(path.join(QWEN2_TINY, f), path.join(modelDir, f));
  const { vocab_size } = readQwen2Config(path.join(QWEN2_TINY, 'config.json'));
  writeTokens(path.join(dir, DATA_PATH), syntheticTokens({ samples: o.samples, seqLen: o.seqLen, vocabSize: vocab_size, seed: o.seed }));
  return modelDir;
}
