// Offline presets for setup-benchmark: a model config and synthetic data that
// need no network and no credentials.
import { syntheticTokens } from '../data/synthetic';
import type { TokenSet } from '../data/tokens';

/** A Hugging Face Qwen2 config.json, as transformers writes it for Qwen2ForCausalLM. */
export interface Qwen2Config {
  architectures: string[];
  model_type: 'qwen2';
  hidden_act: string;
  hidden_size: number;
  intermediate_size: number;
  num_hidden_layers: number;
  num_attention_heads: number;
  num_key_value_heads: number;
  vocab_size: number;
  max_position_embeddings: number;
  rope_theta: number;
  rms_norm_eps: number;
  tie_word_embeddings: boolean;
  torch_dtype: string;
  use_sliding_window: boolean;
  sliding_window: number;
  max_window_layers: number;
  bos_token_id: number;
  eos_token_id: number;
  attention_dropout: number;
  initializer_range: number;
  use_cache: boolean;
  [key: string]: unknown;
}

interface Preset {
  name: string;
  description: string;
  config: Qwen2Config;
  samples: number;
  seqLen: number;
  /** The token data for a seed (hparams' benchmark_data_seed). */
  tokens(seed: number): TokenSet;
}

const TINY_CONFIG: Qwen2Config = {
  architectures: ['Qwen2ForCausalLM'],
  model_type: 'qwen2',
  hidden_act: 'silu',
  hidden_size: 128,
  intermediate_size: 352,
  num_hidden_layers: 2,
  num_attention_heads: 4,
  num_key_value_heads: 2,
  vocab_size: 2048,
  max_position_embeddings: 4096,
  rope_theta: 1000000.0,
  rms_norm_eps: 1e-6,
  tie_word_embeddings: false,
  torch_dtype: 'bfloat16',
  use_sliding_window: false,
  sliding_window: 4096,
  max_window_layers: 2,
  bos_token_id: 2046,
  eos_token_id: 2047,
  attention_dropout: 0.0,
  initializer_range: 0.02,
  use_cache: true,
};

export const PRESETS: Record<string, Preset> = {
  tiny: {
    name: 'tiny',
    description: 'a 2-layer Qwen2 (hidden 128, vocab 2048) and 256 x 128 synthetic Zipf tokens; no network',
    config: TINY_CONFIG,
    samples: 256,
    seqLen: 128,
    tokens: (seed) => syntheticTokens({ samples: 256, seqLen: 128, vocabSize: TINY_CONFIG.vocab_size, seed }),
  },
};

export const PRESET_NAMES = Object.keys(PRESETS);

/** config.json text as written to disk: floats that are whole numbers keep a ".0" as Python writes them. */
export function configJson(config: Qwen2Config): string {
  return JSON.stringify(config, null, 2).replace(/"rope_theta": (\d+)(,?)$/m, '"rope_theta": $1.0$2') + '\n';
}
