// Writing KMS JSON 1.1 answers (awsJson1_1): the KMS proxy's replies and refusals, and the emulator's
// replies. SDKs read `__type` (and X-Amzn-ErrorType) to pick the exception class.
import type { ServerResponse } from 'node:http';
import { AMZ_JSON, type CloisterError, renderKms } from '../errors.ts';

/** What the KMS proxy's refusals say first, so a reader knows the proxy, not KMS, refused. */
export const KMS_PROXY_PREFIX = 'cloister KMS proxy: ';

export function sendJson(
  res: ServerResponse,
  status: number,
  body: unknown,
  extra: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res.writeHead(status, {
    'content-type': AMZ_JSON,
    'content-length': Buffer.byteLength(text),
    ...extra,
  });
  res.end(text);
}

/** A refusal of the KMS proxy: status and KMS `__type` from the error table, the code in x-cloister-error. */
export function sendProxyError(
  res: ServerResponse,
  err: CloisterError,
  extra: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const r = renderKms(err, KMS_PROXY_PREFIX);
  res.writeHead(r.status, { ...r.headers, 'content-length': Buffer.byteLength(r.body), ...extra });
  res.end(r.body);
}
