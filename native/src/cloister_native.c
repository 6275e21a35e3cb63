// cloister's native addon: the few syscalls Node cannot make (AF_VSOCK sockets, the NSM ioctl,
// bringing up lo, crediting entropy). Everything else stays in TypeScript.
#include <node_api.h>

static napi_value Init(napi_env env, napi_value exports) {
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
