// Loads enclaver.yaml (+ the optional cloister.yaml beside it) into one validated Config, or throws a
// ConfigError naming file, key path and line of every problem. Synchronous: it runs once at startup.
//
//   const { manifestPath, settingsPath } = findConfigFiles('/etc/enclaver');
//   const config = loadConfig({ manifestPath, settingsPath });
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { APP_LOG_PORT, STATUS_PORT } from '../constants.ts';
import { ConfigError } from './errors.ts';
import { checkPortClashes, egressEnabled, manifestPorts, parseManifest } from './manifest.ts';
import { YamlSource } from './schema.ts';
import { checkSecretsAgainstManifest } from './secrets.ts';
import { parseSettings } from './settings.ts';
import { type Config, DEFAULT_SETTINGS, type Manifest, type Settings } from './types.ts';

export { ConfigError } from './errors.ts';
export { DEFAULT_EGRESS_PROXY_PORT, egressEnabled, KMS_WITHOUT_EGRESS } from './manifest.ts';
export { mergeSettings, type SettingsOverrides } from './settings.ts';

export const MANIFEST_FILE_NAME = 'enclaver.yaml';
export const SETTINGS_FILE_NAME = 'cloister.yaml';

export interface LoadOptions {
  /** enclaver.yaml; `-` reads it from stdin (as odyn does). */
  manifestPath: string;
  /**
   * cloister.yaml. Given: it must exist. Omitted: `cloister.yaml` beside the manifest is used if it
   * exists, else every setting takes its default.
   */
  settingsPath?: string;
}

/** The files odyn's `--config-dir DIR` names: DIR/enclaver.yaml, and DIR/cloister.yaml if present. */
export function findConfigFiles(configDir: string): { manifestPath: string; settingsPath?: string } {
  const manifestPath = join(configDir, MANIFEST_FILE_NAME);
  const settingsPath = join(configDir, SETTINGS_FILE_NAME);
  return existsSync(settingsPath) ? { manifestPath, settingsPath } : { manifestPath };
}

function readText(file: string): string {
  try {
    return readFileSync(file === '-' ? 0 : file, 'utf8');
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    throw new ConfigError(
      file === '-' ? '<stdin>' : file,
      '',
      0,
      0,
      `cannot read the file: ${e.code ?? e.message}`,
    );
  }
}

/** cloister.yaml ingress.ports names ports of enclaver.yaml's ingress, and attested TLS replaces a tls block. */
function checkIngressPorts(settings: Settings, manifest: Manifest, src: YamlSource): void {
  for (const [key, port] of Object.entries(settings.ingress.ports)) {
    const path = `ingress.ports.${key}`;
    const entry = manifest.ingress?.find((e) => e.listen_port === Number(key));
    if (!entry) {
      src.report(
        src.keyNodes.get(path) ?? src.nodes.get(path),
        path,
        `port ${key} is not an ingress port of the manifest (enclaver.yaml ingress[].listen_port)`,
      );
    } else if (port.tls === 'attested' && entry.tls) {
      src.report(
        src.nodes.get(`${path}.tls`) ?? src.nodes.get(path),
        `${path}.tls`,
        `port ${key} has a tls block (key_file/cert_file) in the manifest: attested TLS replaces it, remove one of the two`,
      );
    }
  }
}

export function loadConfig(opts: LoadOptions): Config {
  const fromStdin = opts.manifestPath === '-';
  const manifestPath = fromStdin ? '-' : resolve(opts.manifestPath);
  const configDir = fromStdin ? process.cwd() : dirname(manifestPath);

  const manifestSrc = new YamlSource(fromStdin ? '<stdin>' : opts.manifestPath, readText(opts.manifestPath));
  const manifest = parseManifest(manifestSrc, configDir);

  let settingsFile = opts.settingsPath;
  if (settingsFile === undefined && !fromStdin && existsSync(join(configDir, SETTINGS_FILE_NAME))) {
    settingsFile = join(configDir, SETTINGS_FILE_NAME);
  }
  let settings = structuredClone(DEFAULT_SETTINGS);
  const errors = [...manifestSrc.errors];
  if (settingsFile !== undefined) {
    const settingsSrc = new YamlSource(settingsFile, readText(settingsFile));
    settings = parseSettings(settingsSrc, dirname(resolve(settingsFile)));
    // The metrics port shares 127.0.0.1 with the manifest's ports.
    const metrics = settings.api.metrics_port;
    if (metrics !== null && settingsSrc.nodes.has('api.metrics_port')) {
      const uses = manifestPorts(manifest, manifestSrc).map((u) => ({
        ...u,
        label: `${manifestSrc.file}: ${u.label}`,
      }));
      const node = settingsSrc.nodes.get('api.metrics_port');
      // The metrics port is also served on vsock (so the host can expose it): it cannot be a status/log port.
      if (metrics === STATUS_PORT || metrics === APP_LOG_PORT) {
        settingsSrc.report(
          node,
          'api.metrics_port',
          `port ${metrics} is reserved: the metrics port is also a vsock port, and the enclave serves its status on vsock ${STATUS_PORT} and app logs on ${APP_LOG_PORT}`,
        );
      }
      checkPortClashes(
        [...uses, { port: metrics, keyPath: 'api.metrics_port', node, label: '' }],
        settingsSrc,
      );
    }
    checkSecretsAgainstManifest(
      settings.secrets,
      manifest,
      egressEnabled(manifest),
      settingsSrc,
      manifestSrc.file,
    );
    checkIngressPorts(settings, manifest, settingsSrc);
    errors.push(...settingsSrc.errors);
  }
  if (errors.length > 0) throw ConfigError.combine(errors);
  return { manifestPath, configDir, manifest, settings };
}
