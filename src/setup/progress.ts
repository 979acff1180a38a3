// Download and work progress on stderr: one line redrawn in place on a
// terminal, a line every 10% otherwise (logs stay readable).
import { formatBytes } from './format';

export class Progress {
  private last = 0;
  private lastPct = -1;
  private readonly start = Date.now();
  private readonly tty: boolean;

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit: 'bytes' | 'count' = 'bytes',
    private readonly out: NodeJS.WriteStream = process.stderr,
  ) {
    this.tty = !!out.isTTY;
  }

  private fmt(n: number): string {
    return this.unit === 'bytes' ? formatBytes(n) : n.toLocaleString('en-US');
  }

  update(done: number): void {
    const now = Date.now();
    const pct = this.total > 0 ? Math.floor((100 * done) / this.total) : 0;
    if (this.tty) {
      if (now - this.last < 200 && done < this.total) return;
      this.last = now;
      const secs = (now - this.start) / 1000;
      const rate = secs > 0 ? `${this.fmt(done / secs)}/s` : '';
      const width = 24;
      const filled = Math.min(width, Math.round((width * pct) / 100));
      this.out.write(`\r${this.label} [${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${pct}% ${this.fmt(done)}/${this.fmt(this.total)} ${rate}   `);
    } else if (Math.floor(pct / 10) > Math.floor(this.lastPct / 10) || this.lastPct < 0) {
      this.out.write(`${this.label}: ${pct}% (${this.fmt(done)} of ${this.fmt(this.total)})\n`);
    }
    this.lastPct = pct;
  }

  done(note = ''): void {
    if (this.tty) this.out.write('\n');
    if (note) this.out.write(`${this.label}: ${note}\n`);
  }
}

export function info(msg: string): void {
  process.stderr.write(msg + '\n');
}
