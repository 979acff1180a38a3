// Where the hub is and who we are: HF_ENDPOINT and HF_TOKEN, from the
// environment or, failing that, a .env file in the working directory.
import * as fs from 'fs';
import { UserError } from '../errors';

const DEFAULT_ENDPOINT = 'https://huggingface.co';

/** KEY=VALUE lines; '#' comments; optional quotes; `export ` prefix allowed. */
export function parseDotenv(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const m = /^(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*)$/.exec(line);
    if (!m) continue;
    let v = m[2].trim();
    if ((v.startsWith('"') && v.endsWith('"')) || (v.startsWith("'") && v.endsWith("'"))) v = v.slice(1, -1);
    else v = v.replace(/\s+#.*$/, '');
    out[m[1]] = v;
  }
  return out;
}

export interface HubEnv {
  endpoint: string;
  token?: string;
  tokenSource?: string;
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

export function hubEnv(env: NodeJS.ProcessEnv = process.env, dotenvPath = '.env'): HubEnv {
  const dot = readDotenv(dotenvPath);
  const pick = (k: string): [string | undefined, string | undefined] =>
    env[k] ? [env[k], 'the environment'] : dot[k] ? [dot[k], dotenvPath] : [undefined, undefined];
  const [token, tokenSource] = pick('HF_TOKEN');
  const [endpoint] = pick('HF_ENDPOINT');
  return { endpoint: (endpoint || DEFAULT_ENDPOINT).replace(/\/+$/, ''), token: token || undefined, tokenSource };
}
