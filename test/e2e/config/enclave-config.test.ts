// Config errors through the real CLI: `cloister enclave --config-dir DIR -- true` (dist/, under
// `unshare -n`) reports a bad manifest or cloister.yaml with file, line and key path, and runs a good pair.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { describe, test } from 'node:test';
import { BASE_MANIFEST as BASE, configDirs } from '../../helpers/config-dirs.ts';

const { configDir } = configDirs();

describe('through the real CLI: cloister enclave --config-dir DIR -- true', () => {
  /** Starts the enclave side (in its own network namespace), emulated vsock, and collects its log. */
  function startEnclave(dir: string) {
    const vsock = join(dir, 'vsock');
    const child = spawn(
      'unshare',
      [
        '-n',
        process.execPath,
        resolve('dist/cli.js'),
        'enclave',
        '--config-dir',
        dir,
        '--transport',
        'emulated',
        '--vsock-dir',
        vsock,
        '--no-bootstrap',
        '--no-console',
        '--nsm',
        'software',
        '--nsm-state',
        join(dir, 'nsm'),
        '--',
        'true',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    child.stdout.on('data', (d) => {
      out += d;
    });
    child.stderr.on('data', (d) => {
      out += d;
    });
    const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
    /** Resolves with the whole log so far once `pattern` shows up in it. */
    const waitFor = async (pattern: RegExp) => {
      const deadline = Date.now() + 20000;
      while (!pattern.test(out)) {
        if (child.exitCode !== null || Date.now() > deadline)
          assert.fail(`never saw ${pattern}; log:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return out;
    };
    const stop = async () => {
      if (child.exitCode === null) child.kill('SIGTERM');
      return exited;
    };
    return { waitFor, stop, child };
  }

  test('a bad manifest is reported with file, line and key path', async (t) => {
    const dir = configDir(`${BASE}ingress:\n  - listen_port: 8080\n  - listen_port: 8080\n`);
    const e = startEnclave(dir);
    t.after(() => e.child.kill('SIGKILL'));
    const log = await e.waitFor(/invalid configuration/);
    assert.ok(
      log.includes(
        `${join(dir, 'enclaver.yaml')}:8:18: ingress[1].listen_port: port 8080 is already used by ingress[0].listen_port (line 7)`,
      ),
      log,
    );
    await e.stop();
  });

  test('a bad cloister.yaml is reported; a good pair runs the app', async (t) => {
    const dir = configDir(BASE, 'app:\n  restart: sometimes\n');
    const bad = startEnclave(dir);
    t.after(() => bad.child.kill('SIGKILL'));
    const log = await bad.waitFor(/invalid configuration/);
    assert.ok(log.includes(`${join(dir, 'cloister.yaml')}:2:12: app.restart: must be one of never`), log);
    await bad.stop();

    writeFileSync(join(dir, 'cloister.yaml'), 'app:\n  restart: never\nlog:\n  level: debug\n');
    const good = startEnclave(dir);
    t.after(() => good.child.kill('SIGKILL'));
    const ran = await good.waitFor(/Entrypoint exited with 0/);
    assert.doesNotMatch(ran, /invalid configuration/);
    assert.equal(await good.stop(), 0);
  });
});
