// Progress on stderr for long work: one line rewritten in place on a
// terminal, plain lines otherwise; silent when disabled (--json).
export class ProgressLine {
  private last = '';
  private lastWrite = 0;
  constructor(private readonly enabled: boolean, private readonly stream: NodeJS.WriteStream = process.stderr) {}

  /** A line that stays. */
  note(text: string): void {
    if (!this.enabled) return;
    this.clear();
    this.stream.write(text + '\n');
  }

  /** A status that replaces the previous one (throttled when not a terminal). */
  update(text: string): void {
    if (!this.enabled || text === this.last) return;
    const now = Date.now();
    if (this.stream.isTTY) {
      this.stream.write(`\r\x1b[K${text}`);
    } else if (now - this.lastWrite > 1000) {
      this.stream.write(text + '\n');
      this.lastWrite = now;
    }
    this.last = text;
  }

  done(): void {
    this.clear();
  }

  private clear(): void {
    if (this.enabled && this.stream.isTTY && this.last) this.stream.write('\r\x1b[K');
    this.last = '';
  }
}
