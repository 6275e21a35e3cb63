// The KMS emulator's errors: AWS KMS's own exception names (`__type`), as real KMS answers them. They are
// the vocabulary of the service the emulator stands in for, so they are not cloister's CLO_ERR_* codes
// (src/errors.ts); the KMS proxy's own refusals are.
import type { ServerResponse } from 'node:http';
import { sendJson } from '../kms/errors.ts';

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

/** status + `{"__type": Name, "message": text}` and X-Amzn-ErrorType, as KMS answers. */
export function sendKmsError(res: ServerResponse, err: KmsError, extra: Record<string, string> = {}): void {
  sendJson(
    res,
    err.status,
    { __type: err.type, message: err.message },
    { 'x-amzn-errortype': err.type, ...extra },
  );
}
