// Atomic file writes: a temp file in the same folder, fsync, rename.
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';

/**
 * Writes pieces to `file` through a temp file in the same folder and a rename.
 * Returns the sha256 (hex) of what was written, hashed on the way.
 */
export function writeAtomic(file: string, pieces: Buffer[]): string {
  fs.mkdirSync(path.dirname(path.resolve(file)), { recursive: true });
  const tmp = `${file}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`; // parsed back by atomicTempPid
  const hash = crypto.createHash('sha256');
  let fd: number | undefined;
  try {
    fd = fs.openSync(tmp, 'w');
    for (const p of pieces) {
      let off = 0;
      while (off < p.length) off += fs.writeSync(fd, p, off, p.length - off);
      hash.update(p);
    }
    fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = undefined;
    fs.renameSync(tmp, file);
  } catch (e) {
    if (fd !== undefined) fs.closeSync(fd);
    fs.rmSync(tmp, { force: true });
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOSPC') throw new UserError(`no space left on the device while writing ${file}`, { hint: 'free some disk space and run again' });
    if (code === 'EACCES' || code === 'EROFS') throw new UserError(`cannot write ${file}: ${code}`);
    throw e;
  }
  return hash.digest('hex');
}

/**
 * The pid of the process that made `name` when it is one of writeAtomic's temp
 * files ("<file>.tmp-<pid>-<8 hex>"), else null: what lets a later run tell a
 * crashed writer's leftovers from a live writer's file.
 */
export function atomicTempPid(name: string): number | null {
  const m = /\.tmp-(\d+)-[0-9a-f]{8}$/.exec(name);
  return m ? Number(m[1]) : null;
}
