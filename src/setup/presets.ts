// Offline presets for setup-benchmark: a model config from the registry and
// synthetic data, needing no network and no credentials.
import { syntheticTokens } from '../data/synthetic';
import type { TokenSet } from '../data/tokens';
import { MODEL_CONFIGS, HfQwen2Config } from '../engine/config';

interface Preset {
  name: string;
  description: string;
  config: HfQwen2Config;
  samples: number;
  seqLen: number;
  /** The token data for a seed (hparams' benchmark_data_seed). */
  tokens(seed: number): TokenSet;
}

function preset(name: string, description: string, config: HfQwen2Config, samples: number, seqLen: number): Preset {
  return { name, description, config, samples, seqLen, tokens: (seed) => syntheticTokens({ samples, seqLen, vocabSize: config.vocab_size, seed }) };
}

export const PRESETS: Record<string, Preset> = {
  tiny: preset('tiny', 'a 2-layer Qwen2 (hidden 128, vocab 2048) and 256 x 128 synthetic Zipf tokens; no network', MODEL_CONFIGS.tiny, 256, 128),
  // The real model's shape without its weights (random init) or the hub: what
  // the GPU measurements and noise-floor runs use.
  '7b-shape': preset(
    '7b-shape',
    "Qwen2.5-7B's config (random init, no weights) and 256 x 1024 synthetic Zipf tokens; no network",
    MODEL_CONFIGS['qwen2.5-7b'],
    256,
    1024,
  ),
};

export const PRESET_NAMES = Object.keys(PRESETS);

/** config.json text as written to disk: floats that are whole numbers keep a ".0" as Python writes them. */
export function configJson(config: HfQwen2Config): string {
  return JSON.stringify(config, null, 2).replace(/"rope_theta": (\d+)(,?)$/m, '"rope_theta": $1.0$2') + '\n';
}
