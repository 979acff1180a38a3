// The benchmark's token data: one (samples, seqLen) integer tensor.
//
// Two on-disk forms, told apart by their first bytes:
//  - train.pt: what Python's torch.save(tensor) writes (a zip holding
//    <archive>/data.pkl, a pickle of one tensor rebuilt by
//    torch._utils._rebuild_tensor_v2, and its storage in <archive>/data/<key>).
//    int64 or int32, 2-D, any strides. writeTokens writes int64, contiguous,
//    readable by torch.load (1.13 and later, weights_only or not) and libtorch.
//  - train.safetensors: a safetensors file with one tensor named "tokens",
//    dtype I64 or I32, shape [samples, seq_len].
// Token ids must lie in [0, 2^31): they come back as an Int32Array.
import * as crypto from 'crypto';
import * as fs from 'fs';
import { UserError } from '../errors';
import { parseSafetensorsHeader, safetensorsHeader } from '../engine/safetensors';
import { writeAtomic } from '../util/atomic';
import { ZipReader, ZipFormatError, buildStoredZip } from './zip';
import { PickleError, PTensor, pickleTensor, unpickle } from './pickle';

export interface TokenSet {
  samples: number;
  seqLen: number;
  ids: Int32Array; // row-major, samples x seqLen
}

const ITEM_SIZE: Record<string, number> = { int64: 8, int32: 4 };

function bad(file: string, what: string, hint?: string): UserError {
  return new UserError(`${file}: ${what}`, { hint });
}

/** Reads train.pt (torch.save format) or a safetensors file holding "tokens". */
export function readTokens(file: string): TokenSet {
  let buf: Buffer;
  try {
    buf = fs.readFileSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new UserError(`cannot read token file ${file}: ${code ?? (e as Error).message}`, {
      hint: code === 'ENOENT' ? 'run `tournament setup-benchmark` (or `--preset tiny`) first' : undefined,
    });
  }
  if (buf.length >= 4 && buf.readUInt32LE(0) === 0x04034b50) return readTorchZip(file, buf);
  if (looksLikeSafetensors(buf)) return readSafetensors(file, buf);
  throw bad(file, 'neither a torch.save zip file nor a safetensors file');
}

function readTorchZip(file: string, buf: Buffer): TokenSet {
  try {
    const zip = new ZipReader(buf);
    const pkl = zip.names().find((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (!pkl) throw bad(file, 'no <archive>/data.pkl in the zip: not a torch.save file');
    const archive = pkl.slice(0, -'data.pkl'.length);
    const obj = unpickle(zip.read(pkl));
    if (!obj || typeof obj !== 'object' || (obj as PTensor).kind !== 'tensor') {
      throw bad(file, 'the pickle holds no tensor (expected torch.save of one 2-D integer tensor)');
    }
    const t = obj as PTensor;
    const st = t.storage;
    const item = ITEM_SIZE[st.dtype];
    if (t.size.length !== 2 || !item) {
      throw bad(file, `expected a 2-D int64 or int32 tensor, found a ${t.size.length}-D ${st.dtype} tensor of shape [${t.size.join(', ')}]`);
    }
    const rec = `${archive}data/${st.key}`;
    if (!zip.entries.has(rec)) throw bad(file, `storage ${rec} is missing from the zip`);
    const data = zip.read(rec);
    if (data.length < st.numel * item) {
      throw bad(file, `storage ${rec} is truncated: ${data.length} bytes, ${st.numel} x ${item} expected`);
    }
    return gather(file, data, st.dtype, st.numel, t.offset, t.size, t.stride);
  } catch (e) {
    if (e instanceof ZipFormatError || e instanceof PickleError) throw bad(file, e.message);
    throw e;
  }
}

/** Copies a strided view of int64/int32 storage into a dense Int32Array, checking every id. */
function gather(file: string, data: Buffer, dtype: string, numel: number, offset: number, size: number[], stride: number[]): TokenSet {
  const [samples, seqLen] = size;
  const [s0, s1] = stride;
  if (samples < 1 || seqLen < 1) throw bad(file, `empty token tensor of shape [${size.join(', ')}]`);
  if (offset < 0 || s0 < 0 || s1 < 0) throw bad(file, 'negative storage offset or stride');
  const last = offset + (samples - 1) * s0 + (seqLen - 1) * s1;
  if (last >= numel) throw bad(file, `the tensor's view reaches element ${last} of a storage of ${numel}`);
  // An aligned Int32Array over the storage (copied once if the zip left it unaligned).
  const words = data.byteOffset % 4 === 0
    ? new Int32Array(data.buffer, data.byteOffset, data.length >> 2)
    : new Int32Array(new Uint8Array(data).buffer, 0, data.length >> 2);
  const ids = new Int32Array(samples * seqLen);
  const wide = dtype === 'int64';
  let k = 0;
  for (let i = 0; i < samples; i++) {
    let e = offset + i * s0;
    for (let j = 0; j < seqLen; j++, e += s1) {
      let v: number;
      if (wide) {
        v = words[2 * e];
        const hi = words[2 * e + 1];
        if (hi !== 0 || v < 0) {
          const big = (BigInt(hi) << 32n) | BigInt(v >>> 0);
          throw bad(file, big < 0n ? `negative token id ${big} at [${i}, ${j}]` : `token id ${big} at [${i}, ${j}] does not fit in int32`);
        }
      } else {
        v = words[e];
        if (v < 0) throw bad(file, `negative token id ${v} at [${i}, ${j}]`);
      }
      ids[k++] = v;
    }
  }
  return { samples, seqLen, ids };
}

function looksLikeSafetensors(buf: Buffer): boolean {
  if (buf.length < 10) return false;
  const n = buf.readBigUInt64LE(0);
  return n > 1n && n < BigInt(buf.length) && buf[8] === 0x7b; // '{'
}

function readSafetensors(file: string, buf: Buffer): TokenSet {
  const { dataStart: base, tensors } = parseSafetensorsHeader(file, buf.length, (pos, len) => buf.subarray(pos, pos + len));
  const t = tensors.tokens;
  if (!t) throw bad(file, `no tensor named "tokens" in the safetensors file (found: ${Object.keys(tensors).join(', ') || 'none'})`);
  const dtype = t.dtype === 'I64' ? 'int64' : t.dtype === 'I32' ? 'int32' : null;
  if (!dtype || !Array.isArray(t.shape) || t.shape.length !== 2) {
    throw bad(file, `"tokens" must be a 2-D I64 or I32 tensor, found ${t.dtype} of shape [${t.shape}]`);
  }
  const [b, e] = t.data_offsets ?? [];
  const item = ITEM_SIZE[dtype];
  const numel = t.shape[0] * t.shape[1];
  if (!Number.isInteger(b) || !Number.isInteger(e) || e - b !== numel * item) {
    throw bad(file, `"tokens" data_offsets [${b}, ${e}] do not match its shape and dtype`);
  }
  if (base + e > buf.length) throw bad(file, `"tokens" is truncated: needs ${base + e} bytes, the file has ${buf.length}`);
  return gather(file, buf.subarray(base + b, base + e), dtype, numel, 0, t.shape, [t.shape[1], 1]);
}

function checkSet(t: TokenSet): void {
  if (!Number.isInteger(t.samples) || !Number.isInteger(t.seqLen) || t.samples < 1 || t.seqLen < 1) {
    throw new Error(`invalid token set shape ${t.samples} x ${t.seqLen}`);
  }
  if (t.ids.length !== t.samples * t.seqLen) throw new Error(`token set has ${t.ids.length} ids for ${t.samples} x ${t.seqLen}`);
}

function int64Bytes(ids: Int32Array): Buffer {
  const out = Buffer.alloc(ids.length * 8);
  const w = new Int32Array(out.buffer, out.byteOffset, ids.length * 2);
  for (let i = 0; i < ids.length; i++) {
    const v = ids[i];
    if (v < 0) throw new Error(`negative token id ${v} at index ${i}`);
    w[2 * i] = v; // little-endian: high word stays 0
  }
  return out;
}

/** The bytes of the torch.save zip for `t` (int64, contiguous), as a list of pieces. */
export function torchSaveBytes(t: TokenSet): Buffer[] {
  checkSet(t);
  const pkl = pickleTensor({ storageType: 'LongStorage', numel: t.ids.length, size: [t.samples, t.seqLen], stride: [t.seqLen, 1] });
  const a = 'archive/';
  const data = int64Bytes(t.ids);
  // PyTorch writes a random 40-digit id here; ours is derived from the data so
  // that the same tokens always give the same file, byte for byte.
  const digest = BigInt('0x' + crypto.createHash('sha256').update(pkl).update(data).digest('hex'));
  const serializationId = (digest % 10n ** 40n).toString().padStart(40, '0');
  return buildStoredZip([
    { name: `${a}data.pkl`, data: pkl },
    { name: `${a}byteorder`, data: Buffer.from('little') },
    { name: `${a}data/0`, data },
    { name: `${a}version`, data: Buffer.from('3\n') },
    { name: `${a}.data/serialization_id`, data: Buffer.from(serializationId) },
  ]);
}

/** The bytes of the safetensors form (one I64 tensor "tokens"). */
function safetensorsBytes(t: TokenSet): Buffer[] {
  checkSet(t);
  const data = int64Bytes(t.ids);
  return [safetensorsHeader([{ name: 'tokens', dtype: 'I64', shape: [t.samples, t.seqLen], nbytes: data.length }]), data];
}

/**
 * Writes `t` atomically (temp file, fsync, rename): int64 in the torch.save
 * zip format, or safetensors when the path ends in .safetensors. Returns the
 * file's sha256.
 */
export function writeTokens(file: string, t: TokenSet): string {
  return writeAtomic(file, file.endsWith('.safetensors') ? safetensorsBytes(t) : torchSaveBytes(t));
}
