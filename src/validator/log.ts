// The validator's log: one line per event on stderr (systemd and pm2 keep it),
// as text for people or JSON lines for machines. Every line about a
// submission names it (#id and the hotkey) so `grep '#12 '` follows one.
export type Level = 'info' | 'warn' | 'error';

export interface SubmissionRef {
  id: number;
  hotkey: string;
}

export interface Logger {
  log(level: Level, message: string, sub?: SubmissionRef): void;
}

export function createLogger(format: 'text' | 'json', stream: NodeJS.WritableStream = process.stderr): Logger {
  return {
    log(level, message, sub) {
      const at = new Date().toISOString();
      if (format === 'json') {
        stream.write(JSON.stringify({ at, level, ...(sub ? { submission: sub.id, hotkey: sub.hotkey } : {}), message }) + '\n');
      } else {
        const who = sub ? `#${sub.id} ${sub.hotkey.slice(0, 8)}… ` : '';
        stream.write(`${at} ${level.toUpperCase().padEnd(5)} ${who}${message}\n`);
      }
    },
  };
}

/** A logger that drops everything (tests). */
export const silentLogger: Logger = { log: () => undefined };
