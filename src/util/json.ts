import * as fs from 'fs';
import { UserError } from '../errors';

/** Parsed JSON of `file`, or null when it does not exist; unreadable or invalid JSON is a UserError. */
export function readJsonFile<T>(file: string, hint?: string): T | null {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw new UserError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  try {
    return JSON.parse(text) as T;
  } catch (e) {
    throw new UserError(`${file} is not valid JSON: ${(e as Error).message}`, { hint });
  }
}
