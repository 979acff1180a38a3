// Temporary folders for tests: one helper, so that every folder a test makes is
// removed when the mocha process ends (pass, fail or Ctrl-C), not left in /tmp.
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';

const made = new Set<string>();
let hooked = false;

function removeAll(): void {
  for (const d of made) removeTmpDir(d);
}

function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', removeAll);
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      removeAll();
      process.kill(process.pid, sig); // then die of it, as without this handler
    });
  }
}

/** A fresh folder under the system temp dir, named `tt-<prefix>-XXXXXX`; removed at exit at the latest. */
export function tmpDir(prefix: string): string {
  hook();
  const d = fs.mkdtempSync(path.join(os.tmpdir(), `tt-${prefix.replace(/[^A-Za-z0-9_.-]/g, '_')}-`));
  made.add(d);
  return d;
}

/** Removes a folder made by tmpDir now (what a sandboxed process wrote in it too). */
export function removeTmpDir(dir: string): void {
  fs.rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
  made.delete(dir);
}

/** The folders made by tmpDir and not yet removed (for the helper's own test). */
export function liveTmpDirs(): string[] {
  return [...made];
}
