// /healthz and /metrics (Prometheus text) on 127.0.0.1:<api.metrics_port> from cloister.yaml; off when
// the port is null. Loopback only: inside the enclave only the app (or an ingress port the manifest
// forwards on purpose) can reach it.
import { createServer } from 'node:http';
import { ConnectionSet, closeServer, trackConnections } from '../connections.ts';
import {
  BadRequestError,
  type CloisterError,
  InternalError,
  MethodNotAllowedError,
  NotFoundError,
  renderJson,
} from '../errors.ts';
import { refuseOddRequests } from '../http/refuse.ts';
import { listenOn, requestUrl } from '../http/server.ts';
import type { Logger } from '../log/logger.ts';
import { appState, registry } from '../metrics.ts';
import { keepServing } from '../server-errors.ts';
import { type Service, serviceLifetime } from '../service.ts';

/** The plan's part: cloister.yaml api.metrics_port (RuntimePlan.metrics; null there means off). */
export interface MetricsSlice {
  port: number;
}

export interface MetricsDeps {
  logger: Logger;
  /** Default 0: a scrape in flight is cut off (nothing is lost by it). */
  closeGraceMs?: number;
}

export interface MetricsService extends Service {
  /** The bound port. */
  port: number;
}

export async function startMetricsServer(slice: MetricsSlice, deps: MetricsDeps): Promise<MetricsService> {
  const log = deps.logger.child({ component: 'metrics' });

  const server = createServer({ requestTimeout: 30_000, headersTimeout: 10_000 }, (req, res) => {
    const reply = (status: number, type: string, body: string, headers: Record<string, string> = {}) => {
      res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), ...headers });
      res.end(body);
    };
    const fail = (err: CloisterError, headers: Record<string, string> = {}) => {
      const { status, headers: rendered, body } = renderJson(err);
      const { 'content-type': type, ...rest } = rendered;
      reply(status, type!, body, { ...rest, ...headers });
    };
    const url = requestUrl(req.url);
    if (url === null) {
      fail(new BadRequestError('the request target is not a valid URL'));
      return;
    }
    const path = url.pathname;
    if (path !== '/healthz' && path !== '/metrics') {
      fail(new NotFoundError(`no such path: ${path}`));
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      fail(new MethodNotAllowedError(`method ${req.method} not allowed`), { Allow: 'GET, HEAD' });
      return;
    }
    if (path === '/healthz') {
      // Healthy means the supervised app is running: a load balancer or the host should stop sending
      // work while it is down or being restarted.
      appState.get().then(
        (m) => {
          const up = m.values[0]?.value === 1;
          reply(
            up ? 200 : 503,
            'application/json',
            `${JSON.stringify({ status: up ? 'ok' : 'unavailable', app: up ? 'running' : 'not running' })}\n`,
          );
        },
        () => reply(500, 'application/json', '{"status":"unknown"}\n'),
      );
      return;
    }
    registry.metrics().then(
      (text) => reply(200, registry.contentType, text),
      (err: Error) => {
        log.warn({ err }, 'cannot render metrics');
        fail(new InternalError('cannot render metrics', { cause: err }));
      },
    );
  });
  refuseOddRequests(server, renderJson);
  const connections = new ConnectionSet();
  const lifetime = serviceLifetime({
    stopAccepting: () => closeServer(server),
    connections,
    graceMs: deps.closeGraceMs ?? 0,
  });
  trackConnections(server, connections, () => lifetime.closing);
  const bound = (await listenOn(server, slice.port)).port;
  keepServing(server, log, 'metrics', { port: bound });
  log.info({ port: bound }, 'metrics listening');
  return { port: bound, close: lifetime.close, destroy: lifetime.destroy };
}
