// The chain tests' reference data, kept in the repository (test/fixtures/): the
// finney runtime metadata and the drand quicknet vectors. Public data; see the
// README beside each. A missing file is an error, not a skip.
import * as fs from 'fs';
import * as path from 'path';
import { PROJECT_ROOT } from '../../src/util/paths';

export const FIXTURES_DIR = path.join(PROJECT_ROOT, 'test', 'fixtures');

/** Path of a file under test/fixtures; throws, naming it, when it is absent. */
export function fixturePath(rel: string): string {
  const p = path.join(FIXTURES_DIR, rel);
  if (!fs.existsSync(p)) throw new Error(`test fixture ${p} is missing (it is part of the repository: restore it with git)`);
  return p;
}

/** The text of a file under test/fixtures. */
export function readFixture(rel: string): string {
  return fs.readFileSync(fixturePath(rel), 'utf8');
}

export interface QuicknetFixture {
  public_key: string;
  genesis_time: number;
  period_seconds: number;
  rounds: { round: number; signature: string }[];
}

/** drand quicknet's public parameters and two real beacon signatures (rounds 1000 and 2000). */
export function loadQuicknet(): QuicknetFixture {
  return JSON.parse(readFixture('drand/quicknet.json')) as QuicknetFixture;
}

/** Finney's runtime metadata: V14 (state_getMetadata) and the V15 runtime-call result. */
export function finneyMetadata(): { v14: string; v15: string } {
  return { v14: readFixture('subtensor/metadata-v14-spec343.hex'), v15: readFixture('subtensor/metadata-v15-at-version-spec343.hex') };
}
