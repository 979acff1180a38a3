// Opens the trusted side of an evaluation (the addon's Evaluator) on a
// benchmark's model folder: with a checkpoint there (model.safetensors or a
// sharded index, as setup-benchmark writes it), every run starts from it,
// else from a seeded random initialisation.
import { loadAddon, native, NativeEvaluator, EvaluatorOptions } from './native';
import { hasCheckpoint, planCheckpointLoad } from './safetensors';

/**
 * Each run's perturbation of a checkpoint start, relative (w * (1 + p * N(0, 1))):
 * about one bf16 rounding step, so that the exact start exists only once the
 * clock runs, while the loss moves far less than training does
 * (docs/design.md, "Starting from a checkpoint").
 */
export const CHECKPOINT_PERTURBATION = 2 ** -8;

export interface OpenedEvaluator {
  evaluator: NativeEvaluator;
  /** Where every run starts: the checkpoint in modelDir, or the seeded random initialisation. */
  start: 'checkpoint' | 'random';
}

/** The Evaluator for `options`, loaded with modelDir's checkpoint when it has one (checked first: a mismatch is a UserError). */
export async function openEvaluator(
  options: Omit<EvaluatorOptions, 'checkpointPerturbation'> & { checkpointPerturbation?: number },
  modelDir: string,
): Promise<OpenedEvaluator> {
  const addon = loadAddon();
  const specs = await native('reading the model config', () => addon.parameterSpecs(options.config));
  const plan = hasCheckpoint(modelDir) ? planCheckpointLoad(modelDir, specs) : undefined;
  const evaluator = await native('setting up the evaluation', () =>
    new addon.Evaluator({ ...options, checkpointPerturbation: options.checkpointPerturbation ?? CHECKPOINT_PERTURBATION }),
  );
  if (!plan) return { evaluator, start: 'random' };
  try {
    await native('loading the checkpoint', () => evaluator.loadCheckpoint(plan));
  } catch (e) {
    evaluator.close();
    throw e;
  }
  return { evaluator, start: 'checkpoint' };
}
