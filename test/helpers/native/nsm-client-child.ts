// Child process for test/native-nsm.test.ts (under the LD_PRELOAD shim): the whole device path as the
// supervisor opens it, openNsm({kind: 'device'}) -> CBOR client -> /dev/nsm ioctl. Prints JSON.
import { openNsm } from '../../../src/nsm/index.ts';

const nsm = await openNsm({ kind: 'device', device_path: '/dev/nsm', state_dir: null, pcrs: {} });
const result = await (process.argv[2] === 'describePcr' ? nsm.describePcr(0) : nsm.getRandom()).then(
  (r) => ({ ok: true, hex: Buffer.from(r instanceof Uint8Array ? r : r.data).toString('hex') }),
  (e: Error & { code?: string }) => ({ ok: false, name: e.name, code: e.code }),
);
await nsm.close();
console.log(JSON.stringify(result));
