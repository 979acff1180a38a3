// One error type for everything a user can cause or fix. The CLI's error
// boundary prints its message alone (no stack) and exits with its code;
// anything else is a bug and gets a stack only with --verbose.

export class UserError extends Error {
  readonly exitCode: number;
  readonly hint?: string;
  constructor(message: string, opts: { hint?: string; exitCode?: number } = {}) {
    super(message);
    this.name = 'UserError';
    this.exitCode = opts.exitCode ?? 1;
    this.hint = opts.hint;
  }
}

/** Turns any thrown value into printable text and an exit code. */
export function describeError(err: unknown, verbose: boolean): { text: string; exitCode: number } {
  if (err instanceof UserError) {
    const lines = [`error: ${err.message}`];
    if (err.hint) lines.push(`hint: ${err.hint}`);
    if (verbose && err.stack) lines.push(err.stack);
    return { text: lines.join('\n'), exitCode: err.exitCode };
  }
  const e = err instanceof Error ? err : new Error(String(err));
  const text = verbose
    ? `internal error: ${e.stack ?? e.message}`
    : `internal error: ${e.message}\n(run again with --verbose for the stack trace)`;
  return { text, exitCode: 2 };
}
