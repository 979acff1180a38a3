// A minimal zip reader and writer: exactly what torch.save's archives need.
//
// Reading: the central directory (with zip64 sizes and offsets), stored and
// deflated entries, CRC-32 checked. Writing: stored entries whose data starts on
// a 64-byte boundary, padded through an extra field as PyTorch's own writer does
// (id "FB"), so that torch.load(mmap=True) and libtorch can map them in place.
import * as zlib from 'zlib';

export class ZipFormatError extends Error {}

interface ZipEntry {
  name: string;
  method: number;
  compressedSize: number;
  size: number;
  crc32: number;
  localHeaderOffset: number;
}

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_EOCD64 = 0x06064b50;
const SIG_EOCD64_LOCATOR = 0x07064b50;

function u64(buf: Buffer, off: number): number {
  const v = buf.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new ZipFormatError('a zip64 size or offset is too large');
  return Number(v);
}

export class ZipReader {
  readonly entries = new Map<string, ZipEntry>();

  constructor(private readonly buf: Buffer) {
    const eocd = this.findEocd();
    let count = buf.readUInt16LE(eocd + 10);
    let cdSize = buf.readUInt32LE(eocd + 12);
    let cdOffset = buf.readUInt32LE(eocd + 16);
    const loc = eocd - 20;
    if (loc >= 0 && buf.readUInt32LE(loc) === SIG_EOCD64_LOCATOR) {
      const e64 = u64(buf, loc + 8);
      if (e64 + 56 > buf.length || buf.readUInt32LE(e64) !== SIG_EOCD64) {
        throw new ZipFormatError('the zip64 end-of-central-directory record is missing or truncated');
      }
      count = u64(buf, e64 + 32);
      cdSize = u64(buf, e64 + 40);
      cdOffset = u64(buf, e64 + 48);
    }
    if (cdOffset + cdSize > buf.length) throw new ZipFormatError('the central directory lies past the end of the file (truncated?)');
    let p = cdOffset;
    for (let i = 0; i < count; i++) {
      if (p + 46 > buf.length || buf.readUInt32LE(p) !== SIG_CENTRAL) {
        throw new ZipFormatError(`central directory entry ${i} is damaged`);
      }
      const method = buf.readUInt16LE(p + 10);
      const crc32 = buf.readUInt32LE(p + 16);
      let compressedSize = buf.readUInt32LE(p + 20);
      let size = buf.readUInt32LE(p + 24);
      const nameLen = buf.readUInt16LE(p + 28);
      const extraLen = buf.readUInt16LE(p + 30);
      const commentLen = buf.readUInt16LE(p + 32);
      let localHeaderOffset = buf.readUInt32LE(p + 42);
      const name = buf.toString('utf8', p + 46, p + 46 + nameLen);
      // zip64 extended information: only the fields whose 32-bit value is 0xFFFFFFFF, in this order.
      let x = p + 46 + nameLen;
      const xEnd = x + extraLen;
      while (x + 4 <= xEnd) {
        const id = buf.readUInt16LE(x);
        const len = buf.readUInt16LE(x + 2);
        if (id === 0x0001) {
          let q = x + 4;
          if (size === 0xffffffff) { size = u64(buf, q); q += 8; }
          if (compressedSize === 0xffffffff) { compressedSize = u64(buf, q); q += 8; }
          if (localHeaderOffset === 0xffffffff) { localHeaderOffset = u64(buf, q); q += 8; }
        }
        x += 4 + len;
      }
      this.entries.set(name, { name, method, compressedSize, size, crc32, localHeaderOffset });
      p = xEnd + commentLen;
    }
  }

  private findEocd(): number {
    const buf = this.buf;
    if (buf.length < 22) throw new ZipFormatError('too short to be a zip file');
    const stop = Math.max(0, buf.length - 22 - 0xffff);
    for (let p = buf.length - 22; p >= stop; p--) {
      if (buf.readUInt32LE(p) === SIG_EOCD) return p;
    }
    throw new ZipFormatError(
      buf.readUInt32LE(0) === SIG_LOCAL
        ? 'zip end-of-central-directory record not found (the file is truncated)'
        : 'not a zip file',
    );
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  /** The entry's bytes (a view into the file for stored entries). */
  read(name: string): Buffer {
    const e = this.entries.get(name);
    if (!e) throw new ZipFormatError(`no entry named ${name}`);
    const buf = this.buf;
    const h = e.localHeaderOffset;
    if (h + 30 > buf.length || buf.readUInt32LE(h) !== SIG_LOCAL) throw new ZipFormatError(`local header of ${name} is damaged`);
    const start = h + 30 + buf.readUInt16LE(h + 26) + buf.readUInt16LE(h + 28);
    if (start + e.compressedSize > buf.length) {
      throw new ZipFormatError(`${name} is truncated: ${e.compressedSize} bytes declared, ${Math.max(0, buf.length - start)} present`);
    }
    const raw = buf.subarray(start, start + e.compressedSize);
    let data: Buffer;
    if (e.method === 0) data = raw;
    else if (e.method === 8) {
      try {
        data = zlib.inflateRawSync(raw);
      } catch (err) {
        throw new ZipFormatError(`${name}: cannot inflate: ${(err as Error).message}`);
      }
    } else throw new ZipFormatError(`${name} uses zip compression method ${e.method}; only stored (0) and deflate (8) are read`);
    if (data.length !== e.size) throw new ZipFormatError(`${name}: ${data.length} bytes, the directory says ${e.size}`);
    if (zlib.crc32(data) !== e.crc32) throw new ZipFormatError(`${name}: CRC-32 mismatch (the file is corrupted)`);
    return data;
  }
}

const ALIGN = 64;

/**
 * Builds a zip of stored entries as a list of buffers (kept as pieces so an
 * 80 MB tensor is never copied into one big buffer). Data offsets are aligned
 * to 64 bytes. Sizes over 4 GiB are refused rather than written as zip64.
 */
export function buildStoredZip(files: { name: string; data: Buffer }[]): Buffer[] {
  const out: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    if (f.data.length >= 0xffffffff) throw new ZipFormatError(`${f.name}: entries of 4 GiB or more are not supported`);
    const name = Buffer.from(f.name, 'utf8');
    const crc = zlib.crc32(f.data);
    let pad = (ALIGN - ((offset + 30 + name.length + 4) % ALIGN)) % ALIGN;
    const extra = Buffer.alloc(4 + pad, 'Z');
    extra.writeUInt16LE(0x4246, 0); // "FB", as PyTorch's writer names its padding field
    extra.writeUInt16LE(pad, 2);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(SIG_LOCAL, 0);
    local.writeUInt16LE(20, 4); // version needed
    local.writeUInt16LE(0, 6); // flags
    local.writeUInt16LE(0, 8); // stored
    local.writeUInt16LE(0, 10); // time
    local.writeUInt16LE(0x21, 12); // date 1980-01-01
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(f.data.length, 18);
    local.writeUInt32LE(f.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(extra.length, 28);
    out.push(local, name, extra, f.data);
    const cd = Buffer.alloc(46);
    cd.writeUInt32LE(SIG_CENTRAL, 0);
    cd.writeUInt16LE(20, 4); // version made by
    cd.writeUInt16LE(20, 6); // version needed
    cd.writeUInt16LE(0, 8);
    cd.writeUInt16LE(0, 10);
    cd.writeUInt16LE(0, 12);
    cd.writeUInt16LE(0x21, 14);
    cd.writeUInt32LE(crc, 16);
    cd.writeUInt32LE(f.data.length, 20);
    cd.writeUInt32LE(f.data.length, 24);
    cd.writeUInt16LE(name.length, 28);
    cd.writeUInt32LE(offset, 42);
    central.push(cd, name);
    offset += 30 + name.length + extra.length + f.data.length;
    if (offset >= 0xffffffff) throw new ZipFormatError('archives of 4 GiB or more are not supported');
    pad = 0;
  }
  const cdSize = central.reduce((n, b) => n + b.length, 0);
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(SIG_EOCD, 0);
  eocd.writeUInt16LE(files.length, 8);
  eocd.writeUInt16LE(files.length, 10);
  eocd.writeUInt32LE(cdSize, 12);
  eocd.writeUInt32LE(offset, 16);
  return [...out, ...central, eocd];
}
