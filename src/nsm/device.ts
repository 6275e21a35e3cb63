// The real NSM: /dev/nsm through the native NSM_IOCTL_RAW call (docs/reference/nitro.md, "NSM device"). This
// layer moves raw CBOR bytes only; the CBOR client (src/nsm/client.ts) encodes requests and decodes replies,
// including the NSM's own {"Error": ...} answers, which arrive as successful ioctls.
import { NSM_REQUEST_MAX_SIZE } from '../constants.ts';
import { isNativeError, loadNative } from '../native.ts';
import { NsmError } from './types.ts';

export interface NsmDevice {
  /** Sends one CBOR request; resolves with the device's reply (at most 12288 bytes). */
  raw(req: Uint8Array): Promise<Uint8Array>;
  /** Waits for requests in flight, then closes the device. Later raw() calls reject. */
  close(): Promise<void>;
}

/** EMSGSIZE -> InputTooLarge (as nsm-api maps it); any other errno -> DeviceError naming it. */
function toNsmError(err: unknown, what: string): NsmError {
  if (isNativeError(err)) {
    const code = err.code === 'EMSGSIZE' ? 'InputTooLarge' : 'DeviceError';
    const e = new NsmError(code, `${what}: ${err.message}`);
    return Object.assign(e, { cause: err, errno: err.code });
  }
  return new NsmError('DeviceError', `${what}: ${err instanceof Error ? err.message : String(err)}`);
}

export async function openNsmDevice(path = '/dev/nsm'): Promise<NsmDevice> {
  const native = loadNative();
  let fd: number;
  try {
    fd = native.nsmOpen(path);
  } catch (err) {
    throw toNsmError(err, `opening ${path}`);
  }
  let closed = false;
  // One ioctl at a time: the driver serializes requests on a per-device mutex anyway, and a request can
  // block for up to 120 s, so concurrent calls would only pin more libuv thread-pool threads
  // (shared with fs, dns and crypto) waiting on that mutex.
  let tail: Promise<unknown> = Promise.resolve();

  return {
    raw(req: Uint8Array): Promise<Uint8Array> {
      if (closed) return Promise.reject(new NsmError('DeviceError', `${path} is closed`));
      if (!(req instanceof Uint8Array))
        return Promise.reject(new TypeError('NSM request must be a Uint8Array'));
      // Refused before the ioctl, as nsm-api does; the driver would answer EMSGSIZE.
      if (req.length > NSM_REQUEST_MAX_SIZE) {
        return Promise.reject(
          new NsmError(
            'InputTooLarge',
            `NSM request of ${req.length} bytes exceeds the ${NSM_REQUEST_MAX_SIZE}-byte limit`,
          ),
        );
      }
      // Copied now: the caller may reuse its buffer before the queued request runs.
      const copy = Uint8Array.from(req);
      const p = tail.then(() =>
        native.nsmRequest(fd, copy).then(
          (buf) => new Uint8Array(buf.buffer, buf.byteOffset, buf.length),
          (err) => {
            throw toNsmError(err, `NSM request on ${path}`);
          },
        ),
      );
      tail = p.catch(() => {});
      return p;
    },
    async close(): Promise<void> {
      if (closed) return;
      closed = true;
      // The fd must outlive the ioctls queued or still running on the thread pool.
      await tail;
      native.closeFd(fd);
    },
  };
}
