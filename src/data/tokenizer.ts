// The model's own tokenizer (tokenizer.json + tokenizer_config.json as the hub
// ships them), run by @huggingface/tokenizers, a pure-JS port of Hugging Face's
// tokenizers. Text is encoded without added special tokens: the packer puts
// the EOS between documents itself.
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer } from '@huggingface/tokenizers';
import { UserError } from '../errors';

export interface TextEncoder {
  encode(text: string): number[];
  tokenToId(token: string): number | undefined;
}

function readJson(file: string, required: boolean): object {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if (!required && (e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UserError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** Loads the tokenizer of a model folder (tokenizer.json, optional tokenizer_config.json). */
export function loadTokenizer(modelDir: string): TextEncoder {
  const json = readJson(path.join(modelDir, 'tokenizer.json'), true);
  const config = readJson(path.join(modelDir, 'tokenizer_config.json'), false);
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
