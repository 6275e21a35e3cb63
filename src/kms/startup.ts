// Start-up checks of the KMS proxy: warn, once and early, when the egress policy will refuse the KMS
// endpoints or IMDS, so that the first failing call is not the first sign of a configuration mistake.

import type { Logger } from '../log/logger.ts';
import type { Policy } from '../policy/policy.ts';
import { defaultPort, kmsEndpoint } from './upstream.ts';

/** `egress`: the rules of the egress proxy the KMS proxy goes through; undefined when none runs. */
export function warnAboutPolicy(
  log: Logger,
  /** The plan's compiled egress policy; null when egress is off. */
  policy: Policy | null,
  endpoints: Record<string, string>,
  env: NodeJS.ProcessEnv,
): void {
  if (!policy) {
    log.warn(
      'no egress proxy runs (no egress.allow in the manifest); KMS and IMDS are dialled directly (no way out of a real enclave)',
    );
    return;
  }
  const targets = Object.keys(endpoints).map((region) => ({
    what: `kms_proxy.endpoints.${region}`,
    url: kmsEndpoint(endpoints, region),
  }));
  if (targets.length === 0) {
    targets.push({
      what: 'the default KMS endpoint (kms.<region>.amazonaws.com)',
      url: kmsEndpoint({}, 'us-east-1'),
    });
  }
  for (const t of targets) {
    const host = t.url.hostname.replace(/^\[|\]$/g, '');
    const d = policy.check(host, defaultPort(t.url));
    if (!d.allowed) {
      log.warn(
        { endpoint: `${host}:${defaultPort(t.url)}`, reason: d.reason },
        `egress policy does not allow ${t.what}; KMS calls will fail until egress.allow lists it`,
      );
    }
  }
  if (
    !env.AWS_ACCESS_KEY_ID &&
    !env.AWS_CONTAINER_CREDENTIALS_FULL_URI &&
    !env.AWS_CONTAINER_CREDENTIALS_RELATIVE_URI &&
    (env.AWS_EC2_METADATA_DISABLED ?? '').toLowerCase() !== 'true'
  ) {
    const imds = new URL(env.AWS_EC2_METADATA_SERVICE_ENDPOINT ?? 'http://169.254.169.254/');
    const d = policy.check(imds.hostname.replace(/^\[|\]$/g, ''), defaultPort(imds));
    if (!d.allowed) {
      log.warn(
        { endpoint: imds.host, reason: d.reason },
        'egress policy does not allow IMDS; the proxy will have no credentials',
      );
    }
  }
}
