// cloister's native addon: the few syscalls Node cannot make. Everything else stays in TypeScript.
// One unit per concern: vsock.c (AF_VSOCK sockets), nsm.c (the /dev/nsm ioctl), system.c (lo, entropy,
// reaping, pipes), splice.c (the kernel tunnel pump), fdwait.c (connects and first reads waited for
// without a thread), poller.c (the per-thread epoll they all wait on), netfilter.c (SO_ORIGINAL_DST, the
// iptables nat table, rtnetlink routes: transparent egress),
// common.c (errors, argument checks, async work).
//
// Errors are Error objects with `code` = errno name (ECONNREFUSED, EMSGSIZE...), `errno` and `syscall`.
// `abiVersion` (CLOISTER_NATIVE_ABI) lets src/native.ts refuse a build from other sources at load.
#include "common.h"

static napi_value Init(napi_env env, napi_value exports) {
  napi_value abi;
  if (napi_create_int32(env, CLOISTER_NATIVE_ABI, &abi) != napi_ok ||
      napi_set_named_property(env, exports, "abiVersion", abi) != napi_ok)
    return NULL;
  if (!init_vsock(env, exports) || !init_nsm(env, exports) || !init_system(env, exports) ||
      !init_splice(env, exports) || !init_fdwait(env, exports) || !init_netfilter(env, exports))
    return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
