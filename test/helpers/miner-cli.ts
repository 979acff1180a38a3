// Runs bin/tournament in a scratch folder, as a miner would, and captures the result.
import { ChildProcess, spawn } from 'child_process';
import * as path from 'path';
import { PROJECT_ROOT } from '../../src/util/paths';

export interface CliResult {
  code: number;
  /** the signal that ended it, if one did */
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** `onSpawn` gets the child as soon as it runs (to signal it); `onStderr` each piece of its stderr. */
export function runCli(
  args: string[],
  opts: { cwd: string; env?: Record<string, string>; onSpawn?: (child: ChildProcess) => void; onStderr?: (text: string) => void },
): Promise<CliResult> {
  const bin = path.join(PROJECT_ROOT, 'bin', 'tournament');
  const env: Record<string, string> = {};
  // The suite's own compile cache passes (helpers/compile-cache); any other TOURNAMENT_ setting of the caller does not.
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && (!k.startsWith('TOURNAMENT_') || k === 'TOURNAMENT_COMPILE_CACHE')) env[k] = v;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [bin, ...args], { cwd: opts.cwd, env: { ...env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      opts.onStderr?.(String(d));
    });
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code: code ?? -1, signal, stdout, stderr }));
    opts.onSpawn?.(child);
  });
}
