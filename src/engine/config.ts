// Reads a Hugging Face Qwen2 config.json into the engine's config, checking
// every field the engine uses. Fields the engine does not use are ignored,
// except those that would change the model's function (sliding window, other
// activations or rope scaling): those are refused rather than silently wrong.
import { readJsonFile } from '../util/json';
import { UserError } from '../errors';
import type { Qwen2Config } from './native';

const INT_FIELDS = [
  'vocab_size',
  'hidden_size',
  'intermediate_size',
  'num_hidden_layers',
  'num_attention_heads',
  'num_key_value_heads',
  'max_position_embeddings',
] as const;

/** A Hugging Face Qwen2 config.json, as transformers writes it for Qwen2ForCausalLM. */
export interface HfQwen2Config {
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

/**
 * The model shapes the project knows by name, in one place: setup-benchmark's
 * presets, the GPU scripts (through `setup-benchmark --preset 7b-shape`) and
 * the tests take them from here.
 */
export const MODEL_CONFIGS = {
  /** 0.89M parameters: CPU tests and the demo. */
  tiny: {
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
  },
  /** Qwen/Qwen2.5-7B's config.json: the tournament's model. */
  'qwen2.5-7b': {
    architectures: ['Qwen2ForCausalLM'],
    model_type: 'qwen2',
    hidden_act: 'silu',
    hidden_size: 3584,
    intermediate_size: 18944,
    num_hidden_layers: 28,
    num_attention_heads: 28,
    num_key_value_heads: 4,
    vocab_size: 152064,
    max_position_embeddings: 131072,
    rope_theta: 1000000.0,
    rms_norm_eps: 1e-6,
    tie_word_embeddings: false,
    torch_dtype: 'bfloat16',
    use_sliding_window: false,
    sliding_window: 131072,
    max_window_layers: 28,
    bos_token_id: 151643,
    eos_token_id: 151643,
    attention_dropout: 0.0,
    initializer_range: 0.02,
    use_cache: true,
  },
} satisfies Record<string, HfQwen2Config>;

export function parseQwen2Config(raw: unknown, where: string): Qwen2Config {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new UserError(`${where}: not a JSON object`);
  const c = raw as Record<string, unknown>;
  if (c.model_type !== undefined && c.model_type !== 'qwen2') {
    throw new UserError(`${where}: model_type is ${JSON.stringify(c.model_type)}; the engine implements "qwen2"`);
  }
  const out: Partial<Qwen2Config> = {};
  for (const k of INT_FIELDS) {
    const v = c[k];
    if (!Number.isInteger(v) || (v as number) <= 0) {
      throw new UserError(`${where}: "${k}" must be a positive integer, got ${JSON.stringify(v)}`);
    }
    out[k] = v as number;
  }
  const num = (k: 'rope_theta' | 'rms_norm_eps', dflt: number) => {
    const v = c[k] ?? dflt;
    if (typeof v !== 'number' || !(v > 0)) throw new UserError(`${where}: "${k}" must be a positive number, got ${JSON.stringify(v)}`);
    return v;
  };
  out.rope_theta = num('rope_theta', 10000);
  out.rms_norm_eps = num('rms_norm_eps', 1e-6);
  const tie = c.tie_word_embeddings ?? false;
  if (typeof tie !== 'boolean') throw new UserError(`${where}: "tie_word_embeddings" must be true or false`);
  out.tie_word_embeddings = tie;
  if ((c.hidden_act ?? 'silu') !== 'silu') throw new UserError(`${where}: hidden_act ${JSON.stringify(c.hidden_act)} is not supported (only "silu")`);
  if (c.use_sliding_window === true) throw new UserError(`${where}: use_sliding_window=true is not supported`);
  if (c.rope_scaling != null) throw new UserError(`${where}: rope_scaling is not supported`);
  const cfg = out as Qwen2Config;
  if (cfg.hidden_size % cfg.num_attention_heads !== 0) {
    throw new UserError(`${where}: hidden_size ${cfg.hidden_size} is not a multiple of num_attention_heads ${cfg.num_attention_heads}`);
  }
  if (cfg.num_attention_heads % cfg.num_key_value_heads !== 0) {
    throw new UserError(`${where}: num_attention_heads ${cfg.num_attention_heads} is not a multiple of num_key_value_heads ${cfg.num_key_value_heads}`);
  }
  if ((cfg.hidden_size / cfg.num_attention_heads) % 2 !== 0) throw new UserError(`${where}: the head dimension must be even`);
  return cfg;
}

export function readQwen2Config(file: string): Qwen2Config {
  const raw = readJsonFile<unknown>(file);
  if (raw === null) {
    throw new UserError(`model config ${file} does not exist`, { hint: 'run `tournament setup-benchmark` (or `--preset tiny`) first' });
  }
  return parseQwen2Config(raw, file);
}
