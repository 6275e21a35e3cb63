// Child process for test/native-nsm.test.ts (run with the LD_PRELOAD shim): opens the NSM device,
// sends the requests given as hex arguments (concurrently), prints one JSON line per result.
import { openNsmDevice } from '../../../src/nsm/device.ts';

const dev = await openNsmDevice(process.env.NSM_PATH || undefined);
const results = await Promise.all(
  process.argv.slice(2).map(async (hex) => {
    try {
      const r = await dev.raw(Buffer.from(hex, 'hex'));
      return { ok: true, length: r.length, hex: Buffer.from(r).toString('hex') };
    } catch (e) {
      const err = e as Error & { code?: string; errno?: string };
      return { ok: false, name: err.name, code: err.code, errno: err.errno, message: err.message };
    }
  }),
);
await dev.close();
const afterClose = await dev.raw(Buffer.from('6947657452616e646f6d', 'hex')).then(
  () => 'resolved',
  (e: Error & { code?: string }) => e.code,
);
for (const r of results) console.log(JSON.stringify(r));
console.log(JSON.stringify({ afterClose }));
