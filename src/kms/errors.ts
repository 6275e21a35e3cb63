// KMS's JSON error format (awsJson1_1): status + `{"__type": Name, "message": text}`, shared by the proxy's
// own refusals and the emulator. SDKs read `__type` (and X-Amzn-ErrorType) to pick the exception class.
import type { ServerResponse } from 'node:http';

export const AMZ_JSON = 'application/x-amz-json-1.1';

export class KmsError extends Error {
  constructor(
    readonly type: string,
    message: string,
    readonly status = 400,
  ) {
    super(message);
    this.name = 'KmsError';
  }
}

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

export function sendKmsError(res: ServerResponse, err: KmsError, extra: Record<string, string> = {}): void {
  sendJson(
    res,
    err.status,
    { __type: err.type, message: err.message },
    { 'x-amzn-errortype': err.type, ...extra },
  );
}
