// One Prometheus registry for the whole daemon. Capabilities import the metric they update;
// the API serves `registry.metrics()` on /metrics.
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

export const registry = new Registry();

export const appState = new Gauge({
  name: 'cloister_app_up',
  help: '1 while the supervised app is running, 0 otherwise',
  registers: [registry],
});
export const appRestarts = new Counter({
  name: 'cloister_app_restarts_total',
  help: 'Times the app was restarted by the restart policy',
  registers: [registry],
});
export const egressDecisions = new Counter({
  name: 'cloister_egress_decisions_total',
  help: 'Egress policy decisions by verdict and deciding rule',
  labelNames: ['verdict', 'rule'] as const,
  registers: [registry],
});
export const egressBytes = new Counter({
  name: 'cloister_egress_bytes_total',
  help: 'Bytes carried through the egress proxy by direction (up = app to internet)',
  labelNames: ['direction'] as const,
  registers: [registry],
});
export const egressOpenTunnels = new Gauge({
  name: 'cloister_egress_open_tunnels',
  help: 'Egress tunnels open right now',
  registers: [registry],
});
export const dnsQueries = new Counter({
  name: 'cloister_dns_queries_total',
  help: 'Transparent egress DNS stub answers by kind (allowed, refused, nxdomain, empty, servfail, formerr)',
  labelNames: ['answer'] as const,
  registers: [registry],
});
export const udpDropped = new Counter({
  name: 'cloister_egress_udp_dropped_total',
  help: 'UDP datagrams (other than DNS) the app sent out in transparent mode, dropped',
  registers: [registry],
});
export const ingressConnections = new Counter({
  name: 'cloister_ingress_connections_total',
  help: 'Ingress connections by port and result',
  labelNames: ['port', 'result'] as const,
  registers: [registry],
});
export const kmsCalls = new Histogram({
  name: 'cloister_kms_call_seconds',
  help: 'KMS proxy calls by action and result',
  labelNames: ['action', 'result'] as const,
  buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
  registers: [registry],
});
export const attestationRequests = new Counter({
  name: 'cloister_attestation_requests_total',
  help: 'Attestation API requests by result',
  labelNames: ['result'] as const,
  registers: [registry],
});
export const attestedCertificates = new Counter({
  name: 'cloister_attested_tls_certificates_total',
  help: 'Attested TLS certificates issued: kind renewal (the served one, first included) or nonce (for one handshake), result ok or failed',
  labelNames: ['kind', 'result'] as const,
  registers: [registry],
});
