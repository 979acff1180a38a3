// Which devices an evaluation runs on. An evaluation of a submission with
// gpus_per_evaluation = G ranks uses G devices, one per rank (rank r on the
// slot's r-th device); a host with more devices runs several evaluations at
// once, one per slot of G devices (the validator's worker pool).
import { loadAddon } from '../engine/native';
import { UserError } from '../errors';

/**
 * Parses a --gpus list: comma-separated device indices (`0,1`), `cuda:N`, or
 * `cpu` (a CPU slot: for trying the scheduling on a machine without GPUs, as
 * the tests do). `cudaDevices` is how many CUDA devices the engine sees.
 */
export function parseGpuList(spec: string, cudaDevices: number): string[] {
  const items = spec.split(',').map((x) => x.trim());
  if (items.length === 0 || items.some((x) => x === '')) throw new UserError(`--gpus ${JSON.stringify(spec)}: expected a comma-separated list such as 0,1`);
  const devices = items.map((x) => {
    if (x === 'cpu') return 'cpu';
    const m = /^(?:cuda:)?(\d+)$/.exec(x);
    if (!m) throw new UserError(`--gpus: ${JSON.stringify(x)} is not a device index (N or cuda:N) nor cpu`);
    const n = Number(m[1]);
    if (n >= cudaDevices) {
      throw new UserError(
        cudaDevices === 0 ? `--gpus: cuda:${n} asked for, but this engine sees no CUDA device` : `--gpus: cuda:${n} asked for, but this engine sees ${cudaDevices} CUDA device(s) (0 to ${cudaDevices - 1})`,
      );
    }
    return `cuda:${n}`;
  });
  // Two evaluations on one card would time each other, not the submission.
  const seen = new Set<string>();
  for (const d of devices) {
    if (d !== 'cpu' && seen.has(d)) throw new UserError(`--gpus: ${d} is listed twice`);
    seen.add(d);
  }
  if (devices.includes('cpu') && devices.some((d) => d !== 'cpu')) throw new UserError('--gpus: mixes cpu and CUDA devices');
  return devices;
}

/** Splits `devices` into evaluation slots of `perEvaluation` devices each, in order. */
export function evaluationSlots(devices: string[], perEvaluation: number): string[][] {
  if (devices.length % perEvaluation !== 0) {
    throw new UserError(`${devices.length} device(s) (${devices.join(', ')}) do not split into evaluations of gpus_per_evaluation = ${perEvaluation}`, {
      hint: `list a multiple of ${perEvaluation} devices`,
    });
  }
  const slots: string[][] = [];
  for (let i = 0; i < devices.length; i += perEvaluation) slots.push(devices.slice(i, i + perEvaluation));
  return slots;
}

/** A --gpus list split into evaluation slots, checked against the CUDA devices this engine sees. */
export function gpuSlots(spec: string, perEvaluation: number): string[][] {
  return evaluationSlots(parseGpuList(spec, loadAddon().info().cudaDeviceCount), perEvaluation);
}

/**
 * The devices of one evaluation without --gpus: `device` itself for one rank;
 * for G ranks, G times the CPU, or cuda:0 .. cuda:G-1 when `device` is CUDA.
 */
export function defaultRankDevices(device: string, ranks: number): string[] {
  if (ranks === 1) return [device];
  if (!device.startsWith('cuda')) return Array.from({ length: ranks }, () => device);
  return Array.from({ length: ranks }, (_, r) => `cuda:${r}`);
}
