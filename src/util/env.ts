// Settings from the environment or a .env file (KEY=VALUE lines, '#' comments,
// quotes, `export ` prefixes), read with Node's own parser so a .env file means
// here what it means to every other tool that uses it.
import * as fs from 'fs';
import * as path from 'path';
import { parseEnv } from 'util';
import { UserError } from '../errors';

export type Env = Record<string, string | undefined>;

/** The settings of a .env file's text. */
export function parseDotenv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(parseEnv(text))) if (v !== undefined) out[k] = v;
  return out;
}

/** The settings of a .env file; {} when there is none. */
export function readDotenv(file: string): Record<string, string> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
    throw new UserError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  return parseDotenv(text);
}

/** The environment merged over `dir`/.env (when present): the environment wins. */
export function loadEnv(dir = process.cwd(), env: NodeJS.ProcessEnv = process.env): Env {
  return { ...readDotenv(path.join(dir, '.env')), ...env };
}
