// Last of all (it ends the boot): SIGTERM to PID 1. cloister forwards it to the app, which takes 300 ms to
// finish and exits 42 (inside the 5 s grace, so no SIGKILL), then cloister exits with the app's code. PID 1
// exiting is what the kernel reports as "Attempted to kill init! exitcode=0x00002a00" (42 << 8), after
// which the guest powers off. Judged on the host from the app's marker file and the console.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type Scenario, sleep } from '../guest/lab.ts';
import { pid1Scenario } from '../guest/pid1-host.ts';

export const scenario: Scenario = pid1Scenario({
  title: 'PID 1 SIGTERM: the app stops gracefully within the grace period, cloister exits with its code',
  endsBoot: true,
  // run starts once the app is up (also when this runs alone: LAB_ONLY=zz-pid1-sigterm)
  async run(ctx) {
    const started = `${ctx.env.results}/app-started.json`;
    while (!existsSync(started)) await sleep(200);
    const { pid } = JSON.parse(readFileSync(`${ctx.env.results}/app-started.json`, 'utf8')) as {
      pid: number;
    };
    ctx.note('app_pid', pid);
    process.kill(1, 'SIGTERM');
    await sleep(60_000); // the guest powers off long before this
  },
  afterBoot(view) {
    const marker = join(view.results, 'app-sigterm.json');
    assert.ok(existsSync(marker), 'the app got SIGTERM');
    assert.match(
      view.console,
      /Attempted to kill init! exitcode=0x00002a00/,
      'PID 1 exited with the app code 42',
    );
    assert.doesNotMatch(
      view.console,
      /sending SIGKILL|SIGKILL/,
      'no SIGKILL: the app finished inside the grace period',
    );
  },
});
