// Download and work progress on stderr, drawn by the shared ProgressLine (one
// line rewritten in place on a terminal, throttled plain lines otherwise).
import { ProgressLine } from '../util/progress';
import { formatBytes } from './format';

export class Progress {
  private readonly line = new ProgressLine(true);
  private readonly start = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly unit: 'bytes' | 'count' = 'bytes',
  ) {}

  private fmt(n: number): string {
    return this.unit === 'bytes' ? formatBytes(n) : Math.round(n).toLocaleString('en-US');
  }

  update(done: number): void {
    const pct = this.total > 0 ? Math.floor((100 * done) / this.total) : 0;
    const secs = (Date.now() - this.start) / 1000;
    const rate = secs > 0.5 ? `, ${this.fmt(done / secs)}/s` : '';
    this.line.update(`${this.label}: ${pct}% (${this.fmt(done)} of ${this.fmt(this.total)}${rate})`);
  }

  /** Ends the line; `note` (else the total) stays on screen. */
  done(note?: string): void {
    this.line.done();
    this.line.note(`${this.label}: ${note ?? `${this.fmt(this.total)} done`}`);
  }
}

export function info(msg: string): void {
  process.stderr.write(msg + '\n');
}
