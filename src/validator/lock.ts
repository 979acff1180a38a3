// One validator per data directory: two loops over one database would each
// evaluate the same queue. The lock is a file holding the owner's pid, made
// with O_EXCL; a lock whose process is gone (killed) is taken over.
import * as fs from 'fs';
import * as path from 'path';
import { UserError } from '../errors';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes the lock on `dataDir`; returns its release. */
export function lockDataDir(dataDir: string): () => void {
  fs.mkdirSync(dataDir, { recursive: true });
  const file = path.join(dataDir, 'evaluate.lock');
  for (let tries = 0; tries < 2; tries++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx' });
      return () => {
        try {
          if (fs.readFileSync(file, 'utf8').trim() === String(process.pid)) fs.rmSync(file);
        } catch {
          // already gone
        }
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(fs.readFileSync(file, 'utf8').trim());
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid && alive(pid)) {
        throw new UserError(`another validator (pid ${pid}) is running on ${dataDir}`, { hint: 'stop it first, or give this one its own --data-dir' });
      }
      fs.rmSync(file, { force: true }); // left by a process that is gone
    }
  }
  throw new UserError(`cannot take the lock ${file}`);
}
