// Where the hub is and who we are: HF_ENDPOINT and HF_TOKEN, from the
// environment or, failing that, a .env file in the working directory.
import { readDotenv } from '../util/env';

const DEFAULT_ENDPOINT = 'https://huggingface.co';

export interface HubEnv {
  endpoint: string;
  token?: string;
  tokenSource?: string;
}

export function hubEnv(env: NodeJS.ProcessEnv = process.env, dotenvPath = '.env'): HubEnv {
  const dot = readDotenv(dotenvPath);
  const pick = (k: string): [string | undefined, string | undefined] =>
    env[k] ? [env[k], 'the environment'] : dot[k] ? [dot[k], dotenvPath] : [undefined, undefined];
  const [token, tokenSource] = pick('HF_TOKEN');
  const [endpoint] = pick('HF_ENDPOINT');
  return { endpoint: (endpoint || DEFAULT_ENDPOINT).replace(/\/+$/, ''), token: token || undefined, tokenSource };
}
