// AF_VSOCK: vsockSocket, vsockBind, vsockListen, vsockConnect, vsockLocalAddress, vsockRemoteAddress.
//
// vsockConnect never blocks a thread: the socket is non-blocking, connect() returns EINPROGRESS and the
// fd waits for writability on the thread's poller (poller.c), with a uv timer for the timeout, and the
// promise settles on the loop thread. It used to wait in poll() on one of libuv's 4 pool threads for
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

// A connect in progress. Freed in the timer's close callback, always after the poller batch that may
// still hold an event for it (see common.h).
typedef struct {
  uv_timer_t timer;  // first: the op's address is the timer's, so free() itself can be its close callback
  poll_watch watch;
  napi_env env;
  napi_deferred deferred;
  napi_async_context async_ctx;
  poller *poller;
  bool settled;
} connect_op;

static void connect_closed(uv_handle_t *h) {
  free(h->data);
}

static void connect_env_cleanup(void *arg);

// Ends the wait: drops the fd from the poller and settles the promise with the fd (err == 0) or the
// error (the fd is closed). With env_gone the JS side is gone: only the fd and memory are released.
static void connect_settle(connect_op *op, int err, const char *syscall, bool env_gone) {
  if (op->settled) return;
  op->settled = true;
  poller_set(op->poller, &op->watch, 0);
  op->watch.events = 0;
  poller_release(op->poller);
  uv_timer_stop(&op->timer);
  if (env_gone) {
    // A worker thread is exiting: libuv runs close callbacks after its copy of the addon may already be
    // unloaded, so the callback must be code that stays: libc's free, on the op (the timer is its first
    // member, and free's void * parameter takes a uv_handle_t * the same way on every Linux ABI).
    close(op->watch.fd);
    uv_close((uv_handle_t *)&op->timer, (uv_close_cb)(void (*)(void))free);
    return;
  }
  napi_env env = op->env;
  napi_remove_env_cleanup_hook(env, connect_env_cleanup, op);
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  // A callback scope, as for any libuv-driven call into JS: closing it runs the microtasks (the
  // promise's reactions) and nextTicks now, not whenever the next unrelated callback comes.
  napi_value resource;
  napi_callback_scope cs = NULL;
  napi_create_object(env, &resource);
  napi_open_callback_scope(env, resource, op->async_ctx, &cs);
  napi_value fd;
  if (!err && napi_create_int32(env, op->watch.fd, &fd) != napi_ok) err = ENOMEM, syscall = "connect";
  if (err) {
    close(op->watch.fd);
    napi_reject_deferred(env, op->deferred, make_errno_error(env, syscall, err));
  } else {
    napi_resolve_deferred(env, op->deferred, fd);
  }
  if (cs) napi_close_callback_scope(env, cs);
  napi_async_destroy(env, op->async_ctx);
  napi_close_handle_scope(env, hs);
  uv_close((uv_handle_t *)&op->timer, connect_closed);
}

// The environment (a worker thread) goes away with the connect pending.
static void connect_env_cleanup(void *arg) {
  connect_settle(arg, ECANCELED, "connect", true);
}

static void connect_event(poll_watch *w, uint32_t events) {
  connect_op *op = w->owner;
  if (op->settled) return;
  // Writable, or an error or hang-up: SO_ERROR says which (0: connected).
  int soerr = 0;
  socklen_t len = sizeof soerr;
  if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
  if (!soerr && !(events & EPOLLOUT)) soerr = ECONNRESET;
  connect_settle(op, soerr, "connect", false);
}

static void connect_timeout(uv_timer_t *t) {
  connect_settle(t->data, ETIMEDOUT, "connect", false);
}

// vsockConnect(cid, port, timeoutMs): Promise<fd> of a connected, non-blocking socket; ETIMEDOUT after
// timeoutMs (< 0: no limit but the kernel's own).
static napi_value VsockConnect(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  int32_t timeout;
  struct sockaddr_vm sa;
  if (!get_vsock_addr(env, argv[0], argv[1], &sa) || !arg_i32(env, argv[2], "timeoutMs", &timeout)) return NULL;
  napi_deferred deferred;
  napi_value promise;
  NAPI_CALL(env, napi_create_promise(env, &deferred, &promise));
  const char *syscall = "socket";
  int err = 0;
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) err = errno;
  if (!err) {
    syscall = "connect";
    // Non-blocking: 0 (connected at once), EINPROGRESS (the usual case), or a final error. EINTR
    // cannot leave it half done either: the connect goes on in the kernel, as after EINPROGRESS.
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
      napi_value r;
      NAPI_CALL(env, napi_create_int32(env, fd, &r));
      napi_resolve_deferred(env, deferred, r);
      return promise;
    }
    if (errno != EINPROGRESS && errno != EINTR && errno != EALREADY) err = errno;
  }
  connect_op *op = NULL;
  if (!err) {
    op = calloc(1, sizeof *op);
    if (!op) err = ENOMEM, syscall = "calloc";
  }
  if (!err) {
    op->poller = poller_get(env, &err);
    if (!op->poller) syscall = "epoll_create1";
  }
  if (!err) {
    op->watch = (poll_watch){.cb = connect_event, .owner = op, .fd = fd};
    err = poller_set(op->poller, &op->watch, EPOLLOUT);
    if (err) syscall = "epoll_ctl";
  }
  if (err) {
    free(op);
    if (fd >= 0) close(fd);
    napi_reject_deferred(env, deferred, make_errno_error(env, syscall, err));
    return promise;
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  op->env = env;
  op->deferred = deferred;
  napi_value name;
  napi_create_string_utf8(env, "cloister.vsockConnect", NAPI_AUTO_LENGTH, &name);
  napi_async_init(env, NULL, name, &op->async_ctx);
  // The poller keeps the loop alive while the connect is pending (as queued work did); the timer
  // alone must not.
  poller_hold(op->poller);
  uv_timer_init(loop, &op->timer);
  op->timer.data = op;
  uv_unref((uv_handle_t *)&op->timer);
  if (timeout >= 0) uv_timer_start(&op->timer, connect_timeout, (uint64_t)timeout, 0);
  napi_add_env_cleanup_hook(env, connect_env_cleanup, op);
  return promise;
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
