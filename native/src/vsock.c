// AF_VSOCK: vsockSocket, vsockBind, vsockListen, vsockConnect, vsockLocalAddress, vsockRemoteAddress.
//
// vsockConnect never blocks a thread: the socket is non-blocking, connect() returns EINPROGRESS and the
// fd waits for writability on the thread's poller (poller.c, through fdwait.c), with a uv timer for the
// timeout, and the promise settles on the loop thread. It used to wait in poll() on one of libuv's 4 pool threads for
// up to the timeout, so a host that stopped accepting on the egress port filled the pool and stalled
// the NSM ioctls, key generation and fs calls behind it (issue 10).
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

static bool get_vsock_addr(napi_env env, napi_value vcid, napi_value vport, struct sockaddr_vm *sa) {
  uint32_t cid, port;
  if (!arg_u32(env, vcid, "cid", &cid) || !arg_u32(env, vport, "port", &port)) return false;
  memset(sa, 0, sizeof *sa);
  sa->svm_family = AF_VSOCK;
  sa->svm_cid = cid;
  sa->svm_port = port;
  return true;
}

// vsockSocket(): fd. Non-blocking and close-on-exec; libuv adopts it as a stream.
static napi_value VsockSocket(napi_env env, napi_callback_info info) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  napi_value r;
  NAPI_CALL(env, napi_create_int32(env, fd, &r));
  return r;
}

// vsockBind(fd, cid, port)
static napi_value VsockBind(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  int32_t fd;
  struct sockaddr_vm sa;
  if (!arg_i32(env, argv[0], "fd", &fd) || !get_vsock_addr(env, argv[1], argv[2], &sa)) return NULL;
  if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0) return throw_errno(env, "bind", errno);
  return undefined(env);
}

// vsockListen(fd, backlog)
static napi_value VsockListen(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd, backlog;
  if (!arg_i32(env, argv[0], "fd", &fd) || !arg_i32(env, argv[1], "backlog", &backlog)) return NULL;
  if (listen(fd, backlog) < 0) return throw_errno(env, "listen", errno);
  return undefined(env);
}

static napi_value addr_object(napi_env env, const struct sockaddr_vm *sa) {
  napi_value o, cid, port;
  NAPI_CALL(env, napi_create_object(env, &o));
  NAPI_CALL(env, napi_create_uint32(env, sa->svm_cid, &cid));
  NAPI_CALL(env, napi_create_uint32(env, sa->svm_port, &port));
  NAPI_CALL(env, napi_set_named_property(env, o, "cid", cid));
  NAPI_CALL(env, napi_set_named_property(env, o, "port", port));
  return o;
}

// vsockLocalAddress(fd) / vsockRemoteAddress(fd): { cid, port }
static napi_value vsock_name(napi_env env, napi_callback_info info, bool peer) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t fd;
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  struct sockaddr_vm sa;
  socklen_t len = sizeof sa;
  memset(&sa, 0, sizeof sa);
  int r = peer ? getpeername(fd, (struct sockaddr *)&sa, &len) : getsockname(fd, (struct sockaddr *)&sa, &len);
  if (r < 0) return throw_errno(env, peer ? "getpeername" : "getsockname", errno);
  if (sa.svm_family != AF_VSOCK) return throw_errno(env, peer ? "getpeername" : "getsockname", EAFNOSUPPORT);
  return addr_object(env, &sa);
}
static napi_value VsockLocalAddress(napi_env env, napi_callback_info info) {
  return vsock_name(env, info, false);
}
static napi_value VsockRemoteAddress(napi_env env, napi_callback_info info) {
  return vsock_name(env, info, true);
}

// vsockConnect(cid, port, timeoutMs): Promise<fd> of a connected, non-blocking socket; ETIMEDOUT after
// timeoutMs (< 0: no limit but the kernel's own). The wait is fdwait.c's connect_fd.
static napi_value VsockConnect(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  int32_t timeout;
  struct sockaddr_vm sa;
  if (!get_vsock_addr(env, argv[0], argv[1], &sa) || !arg_i32(env, argv[2], "timeoutMs", &timeout)) return NULL;
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    // Rejected, not thrown: every connect failure reaches the caller the same way.
    napi_deferred deferred;
    napi_value promise;
    NAPI_CALL(env, napi_create_promise(env, &deferred, &promise));
    napi_reject_deferred(env, deferred, make_errno_error(env, "socket", errno));
    return promise;
  }
  return connect_fd(env, fd, (struct sockaddr *)&sa, sizeof sa, timeout, false);
}

bool init_vsock(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      FUNCTION("vsockSocket", VsockSocket),
      FUNCTION("vsockBind", VsockBind),
      FUNCTION("vsockListen", VsockListen),
      FUNCTION("vsockConnect", VsockConnect),
      FUNCTION("vsockLocalAddress", VsockLocalAddress),
      FUNCTION("vsockRemoteAddress", VsockRemoteAddress),
  };
  return define_functions(env, exports, props, sizeof props / sizeof props[0]);
}
