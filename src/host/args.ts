// Command-line pieces `cloister host` and `cloister dev` share: the flags both take and the ingress
// port mapping they build from the manifest and `-p`.
import { type ParseArgsConfig, parseArgs } from 'node:util';
import { UsageError } from '../cli-args.ts';
import type { Config } from '../config/types.ts';
import type { HostPortMapping } from '../ingress/host.ts';

/** parseArgs options both host-side commands take (each adds its own). */
const HOST_SIDE_OPTIONS = {
  file: { type: 'string', short: 'f' },
  settings: { type: 'string' },
  publish: { type: 'string', short: 'p', multiple: true },
  'listen-address': { type: 'string' },
  verbose: { type: 'boolean', short: 'v', multiple: true },
  help: { type: 'boolean', short: 'h' },
} as const;

/** Parses a host-side command's own flags (no positionals): the shared ones plus `extra`. */
export function parseHostSideArgs<const T extends NonNullable<ParseArgsConfig['options']>>(
  args: string[],
  extra: T,
) {
  return parseArgs({
    args,
    strict: true,
    allowPositionals: false,
    options: { ...HOST_SIDE_OPTIONS, ...extra },
  });
}

/** "-p 8080:80" -> host 8080, enclave 80; "-p 80" -> both 80. */
export function parsePublish(specs: string[]): Map<number, number> {
  const out = new Map<number, number>();
  for (const s of specs) {
    const m = /^(?:(\d+):)?(\d+)$/.exec(s);
    const host = Number(m?.[1] ?? m?.[2]);
    const enclave = Number(m?.[2]);
    if (!m || host > 65535 || enclave < 1 || enclave > 65535) {
      throw new UsageError(`--publish wants HOSTPORT:ENCLAVEPORT, not '${s}'`);
    }
    out.set(enclave, host);
  }
  return out;
}

/**
 * One mapping per manifest ingress port: on the host port `-p` gives it, else the same port. A `-p`
 * naming a port the manifest does not forward is a UsageError (it could never carry traffic).
 */
export function ingressPorts(config: Config, publishSpecs: string[]): HostPortMapping[] {
  const publish = parsePublish(publishSpecs);
  const known = new Set((config.manifest.ingress ?? []).map((i) => i.listen_port));
  for (const p of publish.keys()) {
    if (!known.has(p)) throw new UsageError(`--publish names enclave port ${p}, which is not in ingress`);
  }
  return [...known].map((p) => ({ enclavePort: p, hostPort: publish.get(p) ?? p }));
}
