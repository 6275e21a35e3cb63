// A fixed-size byte ring addressed by absolute stream offsets. The log stream (vsock 17001) keeps the
// newest `capacity` bytes; each reader holds its own offset, so one slow reader never holds back the
// writer or the other readers: when the ring overwrites bytes a reader has not sent yet, that reader
// skips ahead (see LogRing.read) instead of making the ring grow.

export interface RingRead {
  /** Bytes copied out of the ring (safe to hand to socket.write: the ring may overwrite its own copy). */
  data: Buffer;
  /** Offset just past `data`: the reader's next cursor. */
  next: number;
  /** Bytes the reader lost because the ring overwrote them before they were read (0 normally). */
  skipped: number;
}

export class LogRing {
  private readonly buf: Buffer;
  /** Total bytes ever appended: the absolute offset of the next byte. */
  private total = 0;
  private readonly listeners = new Set<() => void>();

  constructor(readonly capacity: number) {
    if (!Number.isInteger(capacity) || capacity < 1)
      throw new Error(`log ring capacity must be >= 1 (${capacity})`);
    this.buf = Buffer.allocUnsafe(capacity);
  }

  /** Offset of the oldest byte still held. */
  get start(): number {
    return Math.max(0, this.total - this.capacity);
  }

  /** Offset just past the newest byte. */
  get end(): number {
    return this.total;
  }

  append(chunk: Buffer | string): void {
    let data = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (data.length === 0) return;
    // A chunk bigger than the ring: only its tail can survive anyway.
    const lost = data.length - this.capacity;
    if (lost > 0) {
      data = data.subarray(lost);
      this.total += lost;
    }
    const at = this.total % this.capacity;
    const first = Math.min(data.length, this.capacity - at);
    data.copy(this.buf, at, 0, first);
    if (first < data.length) data.copy(this.buf, 0, first);
    this.total += data.length;
    for (const fn of this.listeners) fn();
  }

  /**
   * Copy up to `max` bytes starting at `cursor`. A cursor older than `start` (its bytes were overwritten)
   * is moved to `start` and the gap is reported in `skipped`.
   */
  read(cursor: number, max: number): RingRead {
    let from = cursor;
    let skipped = 0;
    if (from < this.start) {
      skipped = this.start - from;
      from = this.start;
    }
    const to = Math.min(this.total, from + max);
    const len = Math.max(0, to - from);
    const data = Buffer.allocUnsafe(len);
    const at = from % this.capacity;
    const first = Math.min(len, this.capacity - at);
    this.buf.copy(data, 0, at, at + first);
    if (first < len) this.buf.copy(data, first, 0, len - first);
    return { data, next: from + len, skipped };
  }

  /** Called after every append; returns a function that unsubscribes. */
  onAppend(fn: () => void): () => void {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }
}
