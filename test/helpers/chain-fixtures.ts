// Where the shared reference data lives (../shared beside the repository) and a
// skip-with-reason for suites that need it when it is absent.
import * as fs from 'fs';
import * as path from 'path';
import { PROJECT_ROOT } from '../../src/util/paths';

export const SHARED_DIR = path.resolve(PROJECT_ROOT, '..', 'shared');

/** Path of a shared fixture, or null (and the reason logged) when the folder is absent. */
export function sharedFixture(rel: string): string | null {
  const p = path.join(SHARED_DIR, 'fixtures', rel);
  return fs.existsSync(p) ? p : null;
}

/** In a mocha before(): skips the suite, saying why, when a fixture is missing. */
export function requireFixture(ctx: Mocha.Context, rel: string): string {
  const p = sharedFixture(rel);
  if (!p) {
    // eslint-disable-next-line no-console
    console.log(`      (skipped: ${path.join(SHARED_DIR, 'fixtures', rel)} is absent; the shared reference fixtures are not here)`);
    ctx.skip();
  }
  return p as string;
}

export interface QuicknetFixture {
  public_key: string;
  genesis_time: number;
  period_seconds: number;
  rounds: { round: number; signature: string }[];
}

export function loadQuicknet(file: string): QuicknetFixture {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as QuicknetFixture;
}
