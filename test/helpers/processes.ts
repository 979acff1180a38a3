// Host processes a test's sandboxed work may have left behind.
import * as fs from 'fs';
import * as path from 'path';

/** Processes with their working directory at or under `dir`, or `dir/` in their command line (bwrap's, a runner's, their forks'). */
export function processesUnder(dir: string): number[] {
  const pids: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p) || Number(p) === process.pid) continue;
    try {
      const cwd = fs.readlinkSync(`/proc/${p}/cwd`);
      const cmdline = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8');
      if (cwd === dir || cwd.startsWith(dir + path.sep) || cmdline.includes(dir + path.sep)) pids.push(Number(p));
    } catch {
      // exited, or not readable
    }
  }
  return pids;
}

/** Waits until no process is under `dir` (as processesUnder), polling up to `timeoutMs`; returns those still there. */
export async function processesGoneUnder(dir: string, timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = processesUnder(dir);
    if (left.length === 0 || Date.now() >= deadline) return left;
    await new Promise((r) => setTimeout(r, 50));
  }
}
