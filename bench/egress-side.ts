// One side of the egress path as its own process, for bench/egress.ts:
//   egress-side.ts relay <vsock-dir>          host relay (cid 2), prints "ready"
//   egress-side.ts proxy <vsock-dir> <allow>  enclave proxy (cid 16), prints its port
// All traffic stays on loopback and the emulated vsock directory.
import { startEgressProxy } from '../src/egress/proxy.ts';
import { startEgressRelay } from '../src/egress/relay.ts';
import { createLogger } from '../src/log/logger.ts';
import { EmulatedTransport } from '../src/transport/emulated.ts';
import { benchEgressPlan } from './measure.ts';

const [role, dir, allow] = process.argv.slice(2);
const logger = createLogger({ level: (process.env.BENCH_LOG_LEVEL as 'warn' | undefined) ?? 'warn' });
if (role === 'relay') {
  await startEgressRelay({}, { transport: new EmulatedTransport(dir!, 2), logger });
  process.stdout.write('ready\n');
} else {
  const plan = benchEgressPlan([allow!]);
  const svc = await startEgressProxy(plan, { transport: new EmulatedTransport(dir!, 16), logger });
  process.stdout.write(`${svc.port}\n`);
}
process.on('SIGTERM', () => process.exit(0));
