// Local stand-ins for the three AWS services boot-time secrets are fetched from, speaking their wire
// formats (on loopback, plain HTTP: cloister reaches them through an endpoint override):
//   S3 GetObject                 GET /<bucket>/<key> (path style); the object's bytes; XML errors (NoSuchKey)
//   SSM GetParameter             POST / awsJson1_1 AmazonSSM.GetParameter -> {"Parameter": {"Value"...}}
//   Secrets Manager              POST / awsJson1_1 secretsmanager.GetSecretValue -> SecretBinary | SecretString
// Every request's SigV4 signature is checked with the KMS emulator's own verifier (written from AWS's
// description, not the signer cloister uses) against the given credentials, for that service's name;
// each request is recorded (service, what was asked, the signing service and region) for the test.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { SignatureError, verifySignature } from '../../src/kms-emulator/sigv4-verify.ts';

export interface FakeAwsContent {
  /** "bucket/key" -> object bytes. */
  s3?: Record<string, Buffer>;
  /** parameter name -> Value (a String parameter). */
  ssm?: Record<string, string>;
  /** secret id -> the secret's value. */
  secretsmanager?: Record<string, { SecretBinary?: Buffer; SecretString?: string }>;
}

export interface FakeRequest {
  service: 's3' | 'ssm' | 'secretsmanager';
  /** S3: the path; JSON: X-Amz-Target and the body. */
  what: string;
  signedFor: string;
  region: string;
  accessKeyId: string;
}

export interface FakeAws {
  urls: { s3: string; ssm: string; secretsmanager: string };
  requests: FakeRequest[];
  close(): Promise<void>;
}

type Creds = { accessKeyId: string; secretAccessKey: string };

/** The enclave's AWS credentials in the end-to-end tests (what IMDS would give it). */
export const WORLD_CREDS: Creds = {
  accessKeyId: 'AKIDSECRETSWORLD',
  secretAccessKey: 'secrets-world-secret',
};

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

function jsonError(res: ServerResponse, status: number, type: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/x-amz-json-1.1', 'x-amzn-errortype': type });
  res.end(JSON.stringify({ __type: type, message }));
}

function s3Error(res: ServerResponse, status: number, code: string, message: string): void {
  res.writeHead(status, { 'content-type': 'application/xml' });
  res.end(
    `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>${message}</Message><RequestId>FAKE</RequestId></Error>`,
  );
}

async function listen(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

export async function startFakeAws(content: FakeAwsContent, creds: Creds): Promise<FakeAws> {
  const requests: FakeRequest[] = [];
  const lookup = (id: string) => (id === creds.accessKeyId ? creds : undefined);

  const make = (
    service: FakeRequest['service'],
    handle: (req: IncomingMessage, body: Buffer, res: ServerResponse) => void,
  ) =>
    createServer(async (req, res) => {
      const body = await readBody(req);
      let scope: Awaited<ReturnType<typeof verifySignature>>;
      try {
        scope = await verifySignature({
          method: req.method ?? '',
          path: req.url ?? '/',
          headers: req.headers,
          body,
          lookup,
          s3Path: service === 's3',
        });
        if (scope.service !== service) {
          throw new SignatureError(
            'InvalidSignatureException',
            `signed for ${scope.service}, not ${service}`,
          );
        }
      } catch (err) {
        const e = err as SignatureError;
        if (service === 's3') s3Error(res, 403, 'SignatureDoesNotMatch', e.message);
        else jsonError(res, 400, e.type ?? 'InvalidSignatureException', e.message);
        return;
      }
      requests.push({
        service,
        what: service === 's3' ? (req.url ?? '') : `${req.headers['x-amz-target']} ${body.toString('utf8')}`,
        signedFor: scope.service,
        region: scope.region,
        accessKeyId: scope.accessKeyId,
      });
      handle(req, body, res);
    });

  const s3 = make('s3', (req, _body, res) => {
    const key = decodeURIComponent((req.url ?? '/').slice(1));
    const obj = req.method === 'GET' ? content.s3?.[key] : undefined;
    if (!obj) return s3Error(res, 404, 'NoSuchKey', 'The specified key does not exist.');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': obj.length });
    res.end(obj);
  });
  const json = (
    service: 'ssm' | 'secretsmanager',
    target: string,
    answer: (input: Record<string, unknown>, res: ServerResponse) => void,
  ) =>
    make(service, (req, body, res) => {
      if (req.method !== 'POST' || req.headers['x-amz-target'] !== target) {
        return jsonError(
          res,
          400,
          'UnknownOperationException',
          `unknown operation ${req.headers['x-amz-target']}`,
        );
      }
      let input: Record<string, unknown>;
      try {
        input = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
      } catch {
        return jsonError(res, 400, 'SerializationException', 'body is not JSON');
      }
      answer(input, res);
    });
  const ssm = json('ssm', 'AmazonSSM.GetParameter', (input, res) => {
    const name = String(input.Name);
    const value = content.ssm?.[name];
    if (value === undefined) return jsonError(res, 400, 'ParameterNotFound', `Parameter ${name} not found.`);
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(
      JSON.stringify({
        Parameter: { Name: name, Type: 'String', Value: value, Version: 1, DataType: 'text' },
      }),
    );
  });
  const sm = json('secretsmanager', 'secretsmanager.GetSecretValue', (input, res) => {
    const id = String(input.SecretId);
    const v = content.secretsmanager?.[id];
    if (!v) {
      return jsonError(
        res,
        400,
        'ResourceNotFoundException',
        "Secrets Manager can't find the specified secret.",
      );
    }
    res.writeHead(200, { 'content-type': 'application/x-amz-json-1.1' });
    res.end(
      JSON.stringify({
        ARN: `arn:aws:secretsmanager:us-east-1:111122223333:secret:${id}`,
        Name: id,
        VersionId: 'v1',
        VersionStages: ['AWSCURRENT'],
        ...(v.SecretBinary ? { SecretBinary: v.SecretBinary.toString('base64') } : {}),
        ...(v.SecretString !== undefined ? { SecretString: v.SecretString } : {}),
      }),
    );
  });
  const servers = [s3, ssm, sm];
  const [s3Url, ssmUrl, smUrl] = await Promise.all(servers.map(listen));
  return {
    urls: { s3: s3Url!, ssm: ssmUrl!, secretsmanager: smUrl! },
    requests,
    close: async () => {
      await Promise.all(
        servers.map(
          (s) =>
            new Promise<void>((r) => {
              s.close(() => r());
              s.closeAllConnections();
            }),
        ),
      );
    },
  };
}
