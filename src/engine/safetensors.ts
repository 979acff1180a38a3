// Hugging Face safetensors checkpoints, single-file or sharded
// (model.safetensors.index.json): the header is parsed and checked here
// against the model's parameters (names, shapes, dtypes, byte ranges, file
// sizes); the engine then reads exactly those byte ranges.
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';
import { writeAtomic } from '../util/atomic';
import type { Dtype, ParameterSpec, WeightEntry } from './native';

const DTYPES: Record<string, { dtype: Dtype; bytes: number }> = {
  BF16: { dtype: 'bfloat16', bytes: 2 },
  F16: { dtype: 'float16', bytes: 2 },
  F32: { dtype: 'float32', bytes: 4 },
};

interface TensorHeader {
  dtype: string;
  shape: number[];
  data_offsets: [number, number];
}

interface SafetensorsHeader {
  dataStart: number;
  size: number;
  tensors: Record<string, TensorHeader>;
}

/**
 * Parses the header of a safetensors file of `size` bytes, whose bytes
 * `read(position, length)` gives: { name: { dtype, shape, data_offsets } }
 * (without __metadata__) and where the data starts.
 */
export function parseSafetensorsHeader(file: string, size: number, read: (pos: number, len: number) => Buffer): SafetensorsHeader {
  if (size < 8) throw new UserError(`${file}: truncated (${size} bytes), not a safetensors file`);
  const headerLen = Number(read(0, 8).readBigUInt64LE(0));
  if (headerLen <= 0 || headerLen > 100 * 1024 * 1024 || 8 + headerLen > size) {
    throw new UserError(`${file}: bad safetensors header length ${headerLen} for a file of ${size} bytes`);
  }
  let parsed: Record<string, unknown>;
  try {
    parsed = JSON.parse(read(8, headerLen).toString('utf8'));
  } catch (e) {
    throw new UserError(`${file}: safetensors header is not valid JSON (${(e as Error).message})`);
  }
  delete parsed.__metadata__;
  return { dataStart: 8 + headerLen, size, tensors: parsed as Record<string, TensorHeader> };
}

/** Reads and parses one file's header (see parseSafetensorsHeader). */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (e) {
    throw new UserError(`cannot open checkpoint file ${file}: ${(e as NodeJS.ErrnoException).code ?? e}`);
  }
  try {
    return parseSafetensorsHeader(file, fs.fstatSync(fd).size, (pos, len) => {
      const buf = Buffer.alloc(len);
      fs.readSync(fd, buf, 0, len, pos);
      return buf;
    });
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * The bytes before the data of a safetensors file holding these tensors, in
 * this order: the header length and the JSON header, padded with spaces so
 * that the data is 8-byte aligned, as the reference writer does.
 */
export function safetensorsHeader(tensors: { name: string; dtype: string; shape: number[]; nbytes: number }[]): Buffer {
  let offset = 0;
  const header: Record<string, TensorHeader> = {};
  for (const t of tensors) {
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + t.nbytes] };
    offset += t.nbytes;
  }
  const json = Buffer.from(JSON.stringify(header));
  const pad = (8 - (json.length % 8)) % 8;
  const out = Buffer.alloc(8 + json.length + pad, 0x20);
  out.writeBigUInt64LE(BigInt(json.length + pad));
  json.copy(out, 8);
  return out;
}

/** Files of a checkpoint directory: the index's shards, or model.safetensors. */
function checkpointFiles(dir: string): { files: string[]; index?: Record<string, string> } {
  const indexFile = path.join(dir, 'model.safetensors.index.json');
  if (fs.existsSync(indexFile)) {
    let index: { weight_map?: Record<string, string> };
    try {
      index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
    } catch (e) {
      throw new UserError(`${indexFile}: not valid JSON: ${(e as Error).message}`);
    }
    if (!index.weight_map || typeof index.weight_map !== 'object') throw new UserError(`${indexFile}: no weight_map`);
    const files = [...new Set(Object.values(index.weight_map))].map((f) => path.join(dir, f));
    return { files, index: index.weight_map };
  }
  const single = path.join(dir, 'model.safetensors');
  if (fs.existsSync(single)) return { files: [single] };
  throw new UserError(`no checkpoint in ${dir}: neither model.safetensors nor model.safetensors.index.json`);
}

/** Whether a directory holds a checkpoint at all (weights are optional for benchmarking). */
export function hasCheckpoint(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'model.safetensors.index.json')) || fs.existsSync(path.join(dir, 'model.safetensors'));
}

/**
 * Plans the load of a checkpoint into a model with these parameters. Every
 * parameter must be present exactly once with its shape and a float dtype;
 * extra tensors are an error too (a checkpoint of another model).
 */
export function planCheckpointLoad(dir: string, params: ParameterSpec[]): WeightEntry[] {
  const { files, index } = checkpointFiles(dir);
  const found = new Map<string, WeightEntry & { shape: number[] }>();
  for (const file of files) {
    const { dataStart, size, tensors } = readSafetensorsHeader(file);
    for (const [name, t] of Object.entries(tensors)) {
      const dt = DTYPES[t.dtype];
      if (!dt) throw new UserError(`${file}: tensor ${name} has dtype ${t.dtype}; expected one of ${Object.keys(DTYPES).join(', ')}`);
      if (!Array.isArray(t.shape) || !Array.isArray(t.data_offsets) || t.data_offsets.length !== 2) {
        throw new UserError(`${file}: tensor ${name} has a malformed header entry`);
      }
      const [begin, end] = t.data_offsets;
      const numel = t.shape.reduce((a, b) => a * b, 1);
      if (end - begin !== numel * dt.bytes) {
        throw new UserError(`${file}: tensor ${name} spans ${end - begin} bytes, its shape [${t.shape}] needs ${numel * dt.bytes}`);
      }
      if (dataStart + end > size) {
        throw new UserError(`${file}: truncated: tensor ${name} ends at byte ${dataStart + end}, the file has ${size}`);
      }
      if (index && path.join(dir, index[name] ?? '') !== file) {
        throw new UserError(`${file}: tensor ${name} is not where model.safetensors.index.json says it is`);
      }
      if (found.has(name)) throw new UserError(`${file}: tensor ${name} appears twice in the checkpoint`);
      found.set(name, { name, file, offset: dataStart + begin, nbytes: end - begin, dtype: dt.dtype, shape: t.shape });
    }
  }
  const entries: WeightEntry[] = [];
  for (const p of params) {
    const e = found.get(p.name);
    if (!e) throw new UserError(`checkpoint in ${dir} has no tensor ${p.name}`);
    if (e.shape.length !== p.shape.length || e.shape.some((d, i) => d !== p.shape[i])) {
      throw new UserError(`${e.file}: tensor ${p.name} has shape [${e.shape}], the model needs [${p.shape}]`);
    }
    found.delete(p.name);
    entries.push({ name: e.name, file: e.file, offset: e.offset, nbytes: e.nbytes, dtype: e.dtype });
  }
  if (found.size > 0) {
    const extra = [...found.keys()].slice(0, 3).join(', ');
    throw new UserError(`checkpoint in ${dir} has ${found.size} tensor(s) the model does not: ${extra}`, {
      hint: 'is config.json the config of this checkpoint?',
    });
  }
  return entries;
}

/** Writes a single-file safetensors checkpoint atomically (used by tests and tiny fixtures). */
export function writeSafetensors(file: string, tensors: { name: string; dtype: keyof typeof DTYPES; shape: number[]; data: Buffer }[]): void {
  const header = safetensorsHeader(tensors.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape, nbytes: t.data.length })));
  writeAtomic(file, [header, ...tensors.map((t) => t.data)]);
}
