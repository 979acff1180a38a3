// Tiny hub-shaped repos for the setup tests: a 266-token Qwen2 model with the
// hand-made tokenizer of test/fixtures/tokenizer and a small safetensors file,
// and a "web" dataset of parquet files with a text column.
import * as fs from 'fs';
import * as path from 'path';
import { importEsm } from '../../src/setup/dataset';
import type { FakeRepo } from './hub-server';

export const TOKENIZER_DIR = path.join(__dirname, '..', '..', '..', 'test', 'fixtures', 'tokenizer');
export const MODEL = 'test-org/tiny-qwen';
export const DATASET = 'test-org/tiny-web';
export const EOS = 265;

function safetensors(bytes: number): Buffer {
  const n = Math.floor(bytes / 2);
  const header = Buffer.from(JSON.stringify({ 'model.embed_tokens.weight': { dtype: 'BF16', shape: [n], data_offsets: [0, n * 2] } }));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  const data = Buffer.alloc(n * 2);
  for (let i = 0; i < data.length; i++) data[i] = (i * 2654435761) >>> 24;
  return Buffer.concat([len, header, data]);
}

export function modelRepo(opts: { gated?: boolean } = {}): FakeRepo {
  const config = {
    architectures: ['Qwen2ForCausalLM'], model_type: 'qwen2', hidden_act: 'silu', hidden_size: 16, intermediate_size: 32,
    num_hidden_layers: 1, num_attention_heads: 2, num_key_value_heads: 1, vocab_size: 266, max_position_embeddings: 128,
    rope_theta: 1000000.0, rms_norm_eps: 1e-6, tie_word_embeddings: false, torch_dtype: 'bfloat16', use_sliding_window: false,
    bos_token_id: EOS, eos_token_id: EOS,
  };
  return {
    type: 'model',
    name: MODEL,
    gated: opts.gated,
    files: {
      '.gitattributes': Buffer.from('*.safetensors filter=lfs diff=lfs merge=lfs -text\n'),
      'README.md': Buffer.from('# tiny\n'),
      'config.json': Buffer.from(JSON.stringify(config, null, 2)),
      'generation_config.json': Buffer.from('{"bos_token_id": 265, "eos_token_id": 265}'),
      'tokenizer.json': fs.readFileSync(path.join(TOKENIZER_DIR, 'tokenizer.json')),
      'tokenizer_config.json': fs.readFileSync(path.join(TOKENIZER_DIR, 'tokenizer_config.json')),
      'model.safetensors': safetensors(300_000),
    },
  };
}

/** Documents whose token ids are known from the fixture tokenizer. */
export const DOCS = [
  'hello world', 'hello hello world', 'world', 'hello', 'hello world hello', 'hello 2024', 'hello! world',
  'world world', 'hello world world', 'hello hello', 'hello, world', 'hello world 1',
];

export async function datasetRepo(): Promise<FakeRepo> {
  const { parquetWriteBuffer } = await importEsm<typeof import('hyparquet-writer')>('hyparquet-writer');
  const file = (docs: string[]) =>
    Buffer.from(parquetWriteBuffer({
      columnData: [
        { name: 'text', data: docs, type: 'STRING' },
        { name: 'id', data: docs.map((_, i) => `<urn:uuid:${i}>`), type: 'STRING' },
        { name: 'token_count', data: docs.map((d) => d.length), type: 'INT32' },
      ],
      rowGroupSize: 3,
    }));
  return {
    type: 'dataset',
    name: DATASET,
    files: {
      'README.md': Buffer.from('# tiny web\n'),
      'sample/10BT/000_00000.parquet': file(DOCS.slice(0, 6)),
      'sample/10BT/001_00000.parquet': file(DOCS.slice(6)),
      'data/CC-MAIN-2013-20/000_00000.parquet': file(['not sampled']),
    },
  };
}
