// Config directories for tests: each holds an enclaver.yaml (and a cloister.yaml), all under one temporary
// root that is removed when the test file ends.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/** The smallest valid manifest; tests append keys to it. */
export const BASE_MANIFEST = `version: v1
name: app
target: app:enclave
sources:
  app: app:latest
`;

export function configDirs(): { root: string; configDir(manifest: string, settings?: string): string } {
  const root = mkdtempSync(join(tmpdir(), 'cloister-config-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  let n = 0;
  return {
    root,
    configDir(manifest, settings) {
      const dir = join(root, `c${n++}`);
      mkdirSync(dir);
      writeFileSync(join(dir, 'enclaver.yaml'), manifest);
      if (settings !== undefined) writeFileSync(join(dir, 'cloister.yaml'), settings);
      return dir;
    },
  };
}
