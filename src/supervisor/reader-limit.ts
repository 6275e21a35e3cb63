// The status (vsock 17000) and log (17001) streams are read by the host, which may open any number of
// connections. Each held connection costs the supervisor a descriptor, and the app's local services
// (attestation API, egress proxy, KMS proxy) take theirs from the same table: a host holding hundreds
// would starve them. So each stream serves at most `streams.max_readers` at once; a connection beyond
// that is closed at once (the readers already there keep theirs) and the refusal is logged. The log
// line is throttled: the host reads that same log, and one line per refused connection would let it
// flush the app's lines out of the ring.
import type { Socket } from 'node:net';

/** At most one refusal line per stream this often; the ones in between are counted in the next. */
const QUIET_MS = 1000;

export type WarnLog = (fields: Record<string, unknown>, msg: string) => void;

export class ReaderLimit {
  private readers = 0;
  private unreported = 0;
  private timer: NodeJS.Timeout | undefined;
  private lastLogged = 0;

  constructor(
    /** Names the stream in the log line ("status stream (vsock 17000)"). */
    private readonly stream: string,
    private readonly max: number,
    private readonly warn: WarnLog,
  ) {}

  /** Counts `sock` as a reader and returns true, or closes it and returns false when the stream is full. */
  admit(sock: Socket): boolean {
    if (this.readers >= this.max) {
      sock.destroy();
      this.refused();
      return false;
    }
    this.readers++;
    sock.once('close', () => this.readers--);
    return true;
  }

  private refused(): void {
    this.unreported++;
    const wait = this.lastLogged + QUIET_MS - Date.now();
    if (wait <= 0) this.report();
    else this.timer ??= setTimeout(() => this.report(), wait).unref();
  }

  private report(): void {
    this.timer = undefined;
    this.lastLogged = Date.now();
    const refused = this.unreported;
    this.unreported = 0;
    this.warn(
      { readers: this.max, refused },
      `too many readers of the ${this.stream}: refused ${refused} connection(s) (streams.max_readers = ${this.max})`,
    );
  }
}
