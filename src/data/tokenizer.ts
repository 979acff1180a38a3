// The model's own tokenizer (tokenizer.json + tokenizer_config.json as the hub
// ships them), run by @huggingface/tokenizers, a pure-JS port of Hugging Face's
// tokenizers. Text is encoded without added special tokens: the packer puts
// the EOS between documents itself.
import * as path from 'path';
import { Tokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors';
import { readJsonFile } from '../util/json';

export interface TextEncoder {
  encode(text: string): number[];
  tokenToId(token: string): number | undefined;
}

/** Loads the tokenizer of a model folder (tokenizer.json, optional tokenizer_config.json). */
export function loadTokenizer(modelDir: string): TextEncoder {
  const file = path.join(modelDir, 'tokenizer.json');
  const json = readJsonFile<object>(file);
  if (!json) throw new UserError(`cannot read ${file}: ENOENT`, { hint: 'run `tournament setup-benchmark` first' });
  const config = readJsonFile<object>(path.join(modelDir, 'tokenizer_config.json')) ?? {};
  let tok: Tokenizer;
  try {
    tok = new Tokenizer(json, config);
  } catch (e) {
    throw new UserError(`${path.join(modelDir, 'tokenizer.json')}: cannot build the tokenizer: ${(e as Error).message}`);
  }
  return {
    encode: (text) => tok.encode(text, { add_special_tokens: false }).ids,
    tokenToId: (t) => tok.token_to_id(t),
  };
}
