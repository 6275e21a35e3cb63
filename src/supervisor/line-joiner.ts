// The app's output shares one log stream with cloister's own lines. Passing pipe chunks straight through
// would let a supervisor log line land in the middle of an app line (and, when stdout and stderr are two
// pipes because the native addon is missing, a stderr chunk in the middle of a stdout line). One
// LineJoiner per pipe holds the pipe's unfinished last line until its newline arrives, so the stream
// interleaves by whole lines. Bytes are never altered or reordered within a pipe; a partial line is
// still flushed after a short pause (prompts, progress bars) or once it gets long.

/** Flush an unfinished line after this long without more data. */
const PARTIAL_LINE_FLUSH_MS = 50;
/** Never hold back more than this: one very long line is passed through in pieces. */
const MAX_PARTIAL_LINE = 16 * 1024;

export class LineJoiner {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private timer: NodeJS.Timeout | undefined;

  constructor(private readonly emit: (data: Buffer) => void) {}

  push(chunk: Buffer): void {
    const nl = chunk.lastIndexOf(0x0a);
    if (nl === -1) {
      this.hold(chunk);
      return;
    }
    const complete = chunk.subarray(0, nl + 1);
    const rest = chunk.subarray(nl + 1);
    if (this.pendingLen > 0) {
      this.pending.push(complete);
      this.pendingLen += complete.length;
      this.flush();
    } else {
      this.emit(complete);
    }
    if (rest.length > 0) this.hold(rest);
  }

  /** Emit whatever is held (end of stream, or the pause expired). */
  flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (this.pendingLen === 0) return;
    const data = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLen);
    this.pending = [];
    this.pendingLen = 0;
    this.emit(data);
  }

  private hold(part: Buffer): void {
    this.pending.push(part);
    this.pendingLen += part.length;
    if (this.pendingLen >= MAX_PARTIAL_LINE) {
      this.flush();
      return;
    }
    if (!this.timer) {
      this.timer = setTimeout(() => this.flush(), PARTIAL_LINE_FLUSH_MS);
      this.timer.unref();
    }
  }
}
