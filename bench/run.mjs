// Runs the benchmarks one after another: `npm run bench` (all) or `npm run bench -- egress kms`.
// Each prints its own table and writes bench/results/<name>.json; numbers go into BENCHMARKS.md by hand.
import { spawnSync } from 'node:child_process';

const ALL = [
  'startup',
  'native',
  'attestation',
  'attested-tls',
  'kms',
  'secrets',
  'interop-burst',
  'ingress',
  'egress',
  'transparent',
  'package',
  'lab',
];
const picked = process.argv.slice(2);
const names = picked.length > 0 ? picked : ALL;
for (const name of names) {
  if (!ALL.includes(name)) {
    console.error(`unknown benchmark '${name}' (have: ${ALL.join(', ')})`);
    process.exit(2);
  }
}
for (const name of names) {
  console.log(`\n== bench/${name}.ts`);
  const r = spawnSync(process.execPath, ['--import', 'tsx', `bench/${name}.ts`], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`bench/${name}.ts failed (exit ${r.status ?? r.signal})`);
    process.exit(1);
  }
}
