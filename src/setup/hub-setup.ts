// The real setup from the Hugging Face hub (issue 5): being written.
import { UserError } from '../errors';
import type { Hparams } from '../config/hparams';
import type { SetupResult } from './setup';

export async function setupFromHub(_o: { dir: string; hparams: Hparams; force: boolean; configOnly: boolean }): Promise<SetupResult> {
  throw new UserError('setup-benchmark from the hub is not implemented yet', { hint: 'use --preset tiny' });
}
