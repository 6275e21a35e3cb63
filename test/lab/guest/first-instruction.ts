// Records the kernel's uptime at the moment a program's first statement runs: imported first by the
// pid1 app (app.ts), and run alone by bench-pid1-start.ts as the shell-started baseline. /proc/uptime
// is the clock both the guest's init and this share (10 ms resolution).
import { readFileSync, writeFileSync } from 'node:fs';

const up = readFileSync('/proc/uptime', 'utf8').split(' ')[0];
writeFileSync(
  process.argv[2]?.startsWith('/') ? process.argv[2] : '/tmp/lab/app-first-instruction',
  `${up}\n`,
);
