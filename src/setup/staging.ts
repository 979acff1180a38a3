// Where a setup is written, and how it replaces a complete one without ever
// losing it (issue 14): nothing of a complete setup is touched until the new
// one is ready.
//
//   - Nothing complete there (no manifest, or a damaged one): the setup is
//     written in place, as before, and its manifest, written last, marks it done.
//   - A complete setup that is to be replaced (--force, or config only now with
//     weights): the new one is written to "<dir>/.staging-<pid>/", reusing the
//     old files it needs through hard links (no second copy of 15 GB), with its
//     manifest written last there too. Only then is it moved in: the old
//     manifest goes, each top-level entry (model/, data/) is swapped with a
//     rename, and the new manifest lands last. A crash in those few renames is
//     finished by the next run: a staging folder that holds a manifest is a
//     complete setup, and moving it in is all that is left to do.
//   - What crashed runs left: writeAtomic's temp files ("*.tmp-<pid>-<hex>",
//     80 MB for the data) of processes that no longer exist are removed on
//     start; a dead run's staging folder without a manifest holds resumable
//     downloads and is adopted by the next replacement; replaced folders are
//     deleted.
import * as fs from 'fs';
import * as path from 'path';
import { atomicTempPid } from '../util/atomic';
import { formatBytes } from './format';
import { MANIFEST, Manifest, readManifest, removeManifest, writeManifest } from './manifest';
import { info } from './progress';

const STAGING = /^\.staging-(\d+)$/;
const REPLACED = /^\.replaced-(\d+)$/;

/** Whether a process with this pid exists (one we may not signal counts: it is alive). */
export function pidAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Every file under `dir` (recursive), as absolute paths; none when it does not exist. */
function filesUnder(dir: string): string[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return [];
  }
  return entries.flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? filesUnder(p) : e.isFile() ? [p] : [];
  });
}

/**
 * Removes writeAtomic's temp files under `dir` whose writer `which` selects:
 * 'dead' (left by processes that no longer exist; a live writer's file is never
 * touched) or 'own' (this process's, when it is interrupted).
 */
export function removeTempFiles(dir: string, which: 'dead' | 'own'): { files: number; bytes: number } {
  let files = 0;
  let bytes = 0;
  for (const f of filesUnder(dir)) {
    const pid = atomicTempPid(path.basename(f));
    if (pid === null || (which === 'own' ? pid !== process.pid : pidAlive(pid))) continue;
    try {
      bytes += fs.statSync(f).size;
      fs.rmSync(f, { force: true });
      files++;
    } catch {
      // gone already (another cleaner): nothing to do
    }
  }
  return { files, bytes };
}

/** Dead runs' folders of a kind ('.staging-<pid>' or '.replaced-<pid>') directly inside `dir`. */
function deadFolders(dir: string, re: RegExp): string[] {
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return [];
  }
  return names.filter((n) => {
    const m = re.exec(n);
    return m !== null && !pidAlive(Number(m[1]));
  }).map((n) => path.join(dir, n));
}

/**
 * Moves the complete setup in `staging` into `dir`, replacing what is there.
 * Safe to run again after a crash part-way: entries already moved are no
 * longer in the staging folder, and the manifest moves last.
 */
function moveIn(dir: string, staging: string): void {
  const replaced = path.join(dir, `.replaced-${process.pid}`);
  removeManifest(dir); // from here until the new manifest lands, the folder reads as incomplete
  fs.mkdirSync(replaced, { recursive: true });
  for (const entry of fs.readdirSync(staging)) {
    if (entry === MANIFEST) continue;
    const dest = path.join(dir, entry);
    if (fs.existsSync(dest)) fs.renameSync(dest, path.join(replaced, entry));
    fs.renameSync(path.join(staging, entry), dest);
  }
  fs.renameSync(path.join(staging, MANIFEST), path.join(dir, MANIFEST));
  fs.rmSync(replaced, { recursive: true, force: true });
  fs.rmSync(staging, { recursive: true, force: true });
}

/**
 * What earlier runs left in `dir`: finishes a replacement whose new setup was
 * complete, deletes replaced folders and dead writers' temp files. Says what it
 * did on stderr.
 */
export function recoverInterrupted(dir: string): void {
  for (const staging of deadFolders(dir, STAGING)) {
    if (!fs.existsSync(path.join(staging, MANIFEST))) continue; // resumable downloads: adopted by the next replacement
    info(`${dir}: an earlier run had finished a new setup in ${path.basename(staging)} but not moved it in; moving it in now`);
    moveIn(dir, staging);
  }
  for (const old of deadFolders(dir, REPLACED)) fs.rmSync(old, { recursive: true, force: true });
  const stale = removeTempFiles(dir, 'dead');
  if (stale.files > 0) info(`${dir}: removed ${stale.files} temporary file(s) (${formatBytes(stale.bytes)}) left by interrupted runs`);
}

/** Where a setup is being written. */
export interface SetupTarget {
  /** the benchmark folder */
  dir: string;
  /** the folder written to: `dir` itself, or a staging folder inside it when a complete setup is being replaced */
  work: string;
  /** the complete setup being replaced, if any */
  replacing: Manifest | null;
}

/**
 * The folder to write a setup to. `replacing` is the complete setup still in
 * `dir` (left untouched), or null when there is nothing complete to keep; in
 * that case `dir` is written in place.
 */
export function openTarget(dir: string, replacing: Manifest | null): SetupTarget {
  if (!replacing) return { dir, work: dir, replacing };
  const work = path.join(dir, `.staging-${process.pid}`);
  const dead = deadFolders(dir, STAGING)[0];
  if (dead) {
    fs.renameSync(dead, work); // an interrupted replacement's downloads resume here
    info(`${dir}: resuming the replacement an earlier run began in ${path.basename(dead)}`);
  } else {
    fs.mkdirSync(work, { recursive: true });
  }
  return { dir, work, replacing };
}

/**
 * Makes the complete setup's file `rel` available in the staging folder without
 * copying it (a hard link), so that a replacement checks it instead of
 * downloading it again. Does nothing when writing in place, when the old setup
 * does not list the file, or when it cannot be linked (it is then downloaded).
 */
export function reuseFile(t: SetupTarget, rel: string): void {
  if (t.work === t.dir || !t.replacing?.files.some((f) => f.path === rel)) return;
  const dest = path.join(t.work, rel);
  if (fs.existsSync(dest)) return;
  try {
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    fs.linkSync(path.join(t.dir, rel), dest);
  } catch {
    // another file system or no links: the download fetches it
  }
}

/** Writes the manifest (last, in the folder written to) and, when staged, moves the new setup in. */
export function finishTarget(t: SetupTarget, m: Manifest): void {
  writeManifest(t.work, m);
  if (t.work !== t.dir) moveIn(t.dir, t.work);
  // Earlier runs' unfinished replacements are obsolete now.
  for (const staging of deadFolders(t.dir, STAGING)) fs.rmSync(staging, { recursive: true, force: true });
}

/**
 * After a failed run: a staging folder with partial downloads is kept for the
 * next --force to resume (and said so), one without is removed. The complete
 * setup in `dir` is untouched either way.
 */
export function abandonTarget(t: SetupTarget): void {
  if (t.work === t.dir) return;
  const partial = filesUnder(t.work).filter((f) => f.endsWith('.partial'));
  if (partial.length === 0) {
    fs.rmSync(t.work, { recursive: true, force: true });
    return;
  }
  info(`${t.dir}: the complete setup there is unchanged; ${partial.length} partial download(s) kept in ${t.work}: run with --force again to resume them, or delete that folder`);
}

/**
 * Runs `fn` with SIGINT and SIGTERM handled: this process's temp files under
 * `dir` are removed (writes are synchronous, so a signal is handled between
 * them, never in the middle), then the process dies of the signal as it would
 * have. Partial downloads are kept: the next run resumes them.
 */
export async function withInterruptCleanup<T>(dir: string, fn: () => Promise<T> | T): Promise<T> {
  const onSignal = (sig: NodeJS.Signals) => {
    detach();
    removeTempFiles(dir, 'own');
    process.stderr.write(`\n${sig}: stopped; partial downloads are kept and resume on the next run\n`);
    process.kill(process.pid, sig);
  };
  const detach = () => {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await fn();
  } finally {
    detach();
  }
}
