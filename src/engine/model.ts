// Opens the benchmark model in this process (tests and checkpoint checks: the
// harness's runs happen in the runner): config from model/config.json,
// parameters from the checkpoint when there is one, seeded random
// initialisation otherwise.
import * as path from 'path';
import { readQwen2Config } from './config';
import { Attention, Dtype, loadAddon, native, NativeModel, Qwen2Config } from './native';
import { hasCheckpoint, planCheckpointLoad } from './safetensors';

export interface OpenModelOptions {
  modelDir: string;
  device: string;
  dtype: Dtype;
  attention: Attention;
  seed: number;
  /** Ignore a checkpoint in modelDir and start from the seeded initialisation. */
  randomInit?: boolean;
}

export interface OpenedModel {
  model: NativeModel;
  config: Qwen2Config;
  numParameters: number;
  weights: 'checkpoint' | 'random';
}

export async function openModel(o: OpenModelOptions): Promise<OpenedModel> {
  const config = readQwen2Config(path.join(o.modelDir, 'config.json'));
  const addon = loadAddon();
  const model = await native('creating the model', () => new addon.testing.Model({ config, device: o.device, dtype: o.dtype, attention: o.attention, seed: o.seed }));
  let weights: OpenedModel['weights'] = 'random';
  if (!o.randomInit && hasCheckpoint(o.modelDir)) {
    const plan = planCheckpointLoad(o.modelDir, model.parameters());
    await native('loading the checkpoint', () => model.loadWeights(plan));
    weights = 'checkpoint';
  }
  return { model, config, numParameters: addon.numParameters(config), weights };
}

/** 'cuda' when the engine was built with CUDA and sees a GPU, else 'cpu'. */
export function defaultDevice(): string {
  return loadAddon().info().cudaAvailable ? 'cuda' : 'cpu';
}
