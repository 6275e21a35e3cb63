// The one route transparent egress needs, added and removed over rtnetlink through the addon (no `ip`
// binary in the app's image): `default dev lo scope link src 127.0.0.1`.
//
// An enclave has only `lo`, so without a route a connect() to any non-local address fails with
// ENETUNREACH before netfilter ever sees it. This route lets the kernel route it (out of lo) so the nat
// OUTPUT rules can redirect it. `src 127.0.0.1` matters: without it the kernel picks no source address
// (127.0.0.1 has host scope, the route link scope), the SYN leaves from 0.0.0.0 and the redirected
// connection never completes. Tried on 6.x; the alternative `local 0.0.0.0/0 dev lo` (every address
// local) also works but makes every IPv4 address the enclave's own, which this route does not.
import { TransparentSetupError } from '../errors.ts';
import { loadNative } from '../native.ts';

const RTM_NEWROUTE = 24;
const RTM_DELROUTE = 25;
const NLM_F_REQUEST = 0x1;
const NLM_F_ACK = 0x4;
const NLM_F_EXCL = 0x200;
const NLM_F_CREATE = 0x400;
const AF_INET = 2;
const RT_TABLE_MAIN = 254;
const RTPROT_STATIC = 4;
const RT_SCOPE_LINK = 253;
const RTN_UNICAST = 1;
const RTA_OIF = 4;
const RTA_PREFSRC = 7;
const LOOPBACK_IFINDEX = 1; // `lo` is always interface 1 in a network namespace

let seq = 0;

/** struct nlmsghdr + struct rtmsg + RTA_OIF + RTA_PREFSRC for the default route via lo. */
export function defaultRouteMessage(add: boolean): Buffer {
  const m = Buffer.alloc(16 + 12 + 8 + 8);
  m.writeUInt32LE(m.length, 0);
  m.writeUInt16LE(add ? RTM_NEWROUTE : RTM_DELROUTE, 4);
  m.writeUInt16LE(NLM_F_REQUEST | NLM_F_ACK | (add ? NLM_F_CREATE | NLM_F_EXCL : 0), 6);
  m.writeUInt32LE(++seq, 8);
  // struct rtmsg: family, dst_len 0 (default), src_len, tos, table, protocol, scope, type, flags.
  m.writeUInt8(AF_INET, 16);
  m.writeUInt8(RT_TABLE_MAIN, 20);
  m.writeUInt8(RTPROT_STATIC, 21);
  m.writeUInt8(RT_SCOPE_LINK, 22);
  m.writeUInt8(RTN_UNICAST, 23);
  m.writeUInt16LE(8, 28);
  m.writeUInt16LE(RTA_OIF, 30);
  m.writeUInt32LE(LOOPBACK_IFINDEX, 32);
  m.writeUInt16LE(8, 36);
  m.writeUInt16LE(RTA_PREFSRC, 38);
  m.writeUInt32BE(0x7f000001, 40);
  return m;
}

/** Adds the default route via lo. EEXIST (a default route is there already) is a setup error. */
export function addDefaultRouteViaLoopback(send = loadNative().rtnetlinkRequest): void {
  try {
    send(defaultRouteMessage(true));
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    const why =
      e.code === 'EEXIST' ? ': a default route already exists (transparent egress needs to own it)' : '';
    throw new TransparentSetupError(
      `cannot add the route 'default dev lo src 127.0.0.1': ${e.message}${why}`,
      {
        cause: err,
      },
    );
  }
}

/** Removes it again (ESRCH, already gone, is fine). */
export function removeDefaultRouteViaLoopback(send = loadNative().rtnetlinkRequest): void {
  try {
    send(defaultRouteMessage(false));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}
