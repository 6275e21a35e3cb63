// Waiting on one socket without a thread, settled as a promise on the loop thread: a non-blocking
// connect (vsockConnect, tcpConnect, unixConnect), the first bytes of a request left in the kernel
// (peekHead), one length-prefixed frame read exactly (readFrame). Each waits on the thread's poller
// (poller.c) with a uv timer for its deadline. These are the per-connection fast path of the egress
// proxy, the relay and ingress (src/transport/fast.ts): a tunnel then never becomes a net.Socket.
//
// A read that can finish at once (the bytes are usually already queued when the connection is
// accepted) settles without touching the poller or the timer.
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

typedef enum { WAIT_CONNECT, WAIT_PEEK, WAIT_FRAME } wait_kind;

// A wait in progress. Freed in the timer's close callback, always after the poller batch that may
// still hold an event for it (see common.h).
typedef struct {
  uv_timer_t timer;  // first: the op's address is the timer's, so free() itself can be its close callback
  poll_watch watch;
  napi_env env;
  napi_deferred deferred;
  napi_async_context async_ctx;
  poller *poller;
  wait_kind kind;
  bool settled;
  bool owns_fd;  // connect: the fd is the op's until it resolves (closed on failure)
  // peek: at most `want` bytes; frame: 2 header bytes, then `want` body bytes into `buf`
  size_t want;
  size_t got;
  uint8_t hdr[2];
  uint8_t *buf;
} wait_op;

static void wait_closed(uv_handle_t *h) {
  wait_op *op = h->data;
  free(op->buf);
  free(op);
}

static void wait_env_cleanup(void *arg);

// The value a finished wait resolves with (NULL: napi failed, reject with ENOMEM).
static napi_value wait_value(napi_env env, wait_op *op) {
  napi_value v = NULL;
  if (op->kind == WAIT_CONNECT) {
    if (napi_create_int32(env, op->watch.fd, &v) != napi_ok) return NULL;
    return v;
  }
  void *data;
  size_t n = op->kind == WAIT_FRAME ? op->want : op->got;
  if (napi_create_buffer_copy(env, n, n ? (const void *)op->buf : (const void *)"", &data, &v) != napi_ok) return NULL;
  return v;
}

// Ends the wait: drops the fd from the poller and settles the promise. With env_gone the JS side is
// gone: only the fd (if the op owns it) and memory are released.
static void wait_settle(wait_op *op, int err, const char *syscall, bool env_gone) {
  if (op->settled) return;
  op->settled = true;
  bool waited = op->poller != NULL;
  if (waited) {
    poller_set(op->poller, &op->watch, 0);
    op->watch.events = 0;
    poller_release(op->poller);
    uv_timer_stop(&op->timer);
  }
  if (env_gone) {
    // A worker thread is exiting: libuv runs close callbacks after its copy of the addon may already be
    // unloaded, so the callback must be code that stays: libc's free, on the op (the timer is its first
    // member, and free's void * parameter takes a uv_handle_t * the same way on every Linux ABI). The
    // frame buffer is freed here, as the callback cannot.
    if (op->owns_fd) close(op->watch.fd);
    free(op->buf);
    op->buf = NULL;
    uv_close((uv_handle_t *)&op->timer, (uv_close_cb)(void (*)(void))free);
    return;
  }
  napi_env env = op->env;
  napi_handle_scope hs;
  napi_open_handle_scope(env, &hs);
  napi_callback_scope cs = NULL;
  if (waited) {
    napi_remove_env_cleanup_hook(env, wait_env_cleanup, op);
    // A callback scope, as for any libuv-driven call into JS: closing it runs the microtasks (the
    // promise's reactions) and nextTicks now, not whenever the next unrelated callback comes.
    napi_value resource;
    napi_create_object(env, &resource);
    napi_open_callback_scope(env, resource, op->async_ctx, &cs);
  }
  napi_value v = NULL;
  if (!err && !(v = wait_value(env, op))) err = ENOMEM, syscall = "napi";
  if (err) {
    if (op->owns_fd) close(op->watch.fd);
    napi_reject_deferred(env, op->deferred, make_errno_error(env, syscall, err));
  } else {
    napi_resolve_deferred(env, op->deferred, v);
  }
  if (cs) napi_close_callback_scope(env, cs);
  if (waited) napi_async_destroy(env, op->async_ctx);
  napi_close_handle_scope(env, hs);
  if (waited) {
    uv_close((uv_handle_t *)&op->timer, wait_closed);
  } else {
    free(op->buf);
    free(op);
  }
}

static void wait_env_cleanup(void *arg) {
  wait_settle(arg, ECANCELED, "wait", true);
}

// One attempt at the read an op waits for: 0 done, EAGAIN not yet, else an errno.
static int wait_read(wait_op *op, const char **syscall) {
  int fd = op->watch.fd;
  *syscall = "recv";
  if (op->kind == WAIT_PEEK) {
    ssize_t n;
    do n = recv(fd, op->buf, op->want, MSG_PEEK | MSG_DONTWAIT);
    while (n < 0 && errno == EINTR);
    if (n < 0) return errno;
    op->got = (size_t)n;  // 0: EOF before a byte
    return 0;
  }
  // WAIT_FRAME: exactly 2 + length bytes, so what follows the frame stays in the kernel.
  for (;;) {
    uint8_t *dst;
    size_t left;
    if (op->got < 2) {
      dst = op->hdr + op->got;
      left = 2 - op->got;
    } else {
      if (op->want == (size_t)-1) {
        op->want = (size_t)op->hdr[0] | ((size_t)op->hdr[1] << 8);
        if (op->want == 0) return 0;  // an empty frame: resolved empty, the caller refuses it
        op->buf = malloc(op->want);
        if (!op->buf) return *syscall = "malloc", ENOMEM;
      }
      size_t body = op->got - 2;
      if (body == op->want) return 0;
      dst = op->buf + body;
      left = op->want - body;
    }
    ssize_t n = recv(fd, dst, left, MSG_DONTWAIT);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) return ECONNRESET;  // the peer closed before a complete frame
    op->got += (size_t)n;
  }
}

static void wait_event(poll_watch *w, uint32_t events) {
  wait_op *op = w->owner;
  if (op->settled) return;
  if (op->kind == WAIT_CONNECT) {
    // Writable, or an error or hang-up: SO_ERROR says which (0: connected).
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(w->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
    if (!soerr && !(events & EPOLLOUT)) soerr = ECONNRESET;
    return wait_settle(op, soerr, "connect", false);
  }
  const char *syscall;
  int err = wait_read(op, &syscall);
  if (err != EAGAIN) wait_settle(op, err, syscall, false);
}

static void wait_timeout(uv_timer_t *t) {
  wait_op *op = t->data;
  wait_settle(op, ETIMEDOUT, op->kind == WAIT_CONNECT ? "connect" : "recv", false);
}

// Registers the op on the poller for `events`, with a deadline (timeout < 0: none).
static int wait_start(napi_env env, wait_op *op, uint32_t events, int32_t timeout, const char *name) {
  int err = 0;
  op->poller = poller_get(env, &err);
  if (!op->poller) return err;
  op->watch.cb = wait_event;
  op->watch.owner = op;
  err = poller_set(op->poller, &op->watch, events);
  if (err) {
    op->poller = NULL;
    return err;
  }
  uv_loop_t *loop;
  napi_get_uv_event_loop(env, &loop);
  napi_value resource_name;
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name);
  napi_async_init(env, NULL, resource_name, &op->async_ctx);
  // The poller keeps the loop alive while the wait is pending; the timer alone must not.
  poller_hold(op->poller);
  uv_timer_init(loop, &op->timer);
  op->timer.data = op;
  uv_unref((uv_handle_t *)&op->timer);
  if (timeout >= 0) uv_timer_start(&op->timer, wait_timeout, (uint64_t)timeout, 0);
  napi_add_env_cleanup_hook(env, wait_env_cleanup, op);
  return 0;
}

static wait_op *wait_new(napi_env env, wait_kind kind, int fd, napi_value *promise) {
  wait_op *op = calloc(1, sizeof *op);
  if (!op) {
    throw_errno(env, "calloc", ENOMEM);
    return NULL;
  }
  if (napi_create_promise(env, &op->deferred, promise) != napi_ok) {
    free(op);
    napi_throw_error(env, NULL, "could not create a promise");
    return NULL;
  }
  op->env = env;
  op->kind = kind;
  op->watch.fd = fd;
  return op;
}

napi_value connect_fd(napi_env env, int fd, const struct sockaddr *sa, socklen_t salen, int32_t timeout,
                      bool probe) {
  napi_value promise;
  wait_op *op = wait_new(env, WAIT_CONNECT, fd, &promise);
  if (!op) {
    close(fd);
    return NULL;
  }
  op->owns_fd = true;
  // Non-blocking: 0 (connected at once), EINPROGRESS (the usual case), or a final error. EINTR
  // cannot leave it half done either: the connect goes on in the kernel, as after EINPROGRESS.
  if (connect(fd, sa, salen) == 0) {
    wait_settle(op, 0, "connect", false);
    return promise;
  }
  if (errno != EINPROGRESS && errno != EINTR && errno != EALREADY) {
    wait_settle(op, errno, "connect", false);
    return promise;
  }
  if (probe) {
    // Loopback TCP: the handshake has usually completed inside connect() itself, so one poll() settles
    // it now instead of a poller registration, a loop turn and its removal.
    struct pollfd pfd = {.fd = fd, .events = POLLOUT};
    if (poll(&pfd, 1, 0) == 1) {
      int soerr = 0;
      socklen_t len = sizeof soerr;
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
      if (!soerr && !(pfd.revents & POLLOUT)) soerr = ECONNRESET;
      wait_settle(op, soerr, "connect", false);
      return promise;
    }
  }
  int err = wait_start(env, op, EPOLLOUT, timeout, "cloister.connect");
  if (err) wait_settle(op, err, "epoll_ctl", false);
  return promise;
}

// tcpConnect(ip, port, timeoutMs): Promise<fd> of a connected, non-blocking TCP socket with TCP_NODELAY
// (a tunnel's small writes must not wait for an ACK). `ip` is a numeric IPv4 or IPv6 address.
static napi_value TcpConnect(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  char ip[64];
  size_t len;
  uint32_t port;
  int32_t timeout;
  if (napi_get_value_string_utf8(env, argv[0], ip, sizeof ip, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "ip must be a string");
    return NULL;
  }
  if (!arg_u32(env, argv[1], "port", &port) || !arg_i32(env, argv[2], "timeoutMs", &timeout)) return NULL;
  if (port > 65535) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "port must be in [0, 65535]");
    return NULL;
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t salen;
  struct sockaddr_in *in4 = (struct sockaddr_in *)&ss;
  struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
  if (inet_pton(AF_INET, ip, &in4->sin_addr) == 1) {
    in4->sin_family = AF_INET;
    in4->sin_port = htons((uint16_t)port);
    salen = sizeof *in4;
  } else if (inet_pton(AF_INET6, ip, &in6->sin6_addr) == 1) {
    in6->sin6_family = AF_INET6;
    in6->sin6_port = htons((uint16_t)port);
    salen = sizeof *in6;
  } else {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "ip must be a numeric IPv4 or IPv6 address");
    return NULL;
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return connect_fd(env, fd, (struct sockaddr *)&ss, salen, timeout, true);
}

// unixConnect(path, timeoutMs): Promise<fd> of a connected, non-blocking Unix stream socket.
static napi_value UnixConnect(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], sa.sun_path, sizeof sa.sun_path, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "path must be a string");
    return NULL;
  }
  if (len >= sizeof sa.sun_path - 1) return throw_errno(env, "connect", ENAMETOOLONG);
  int32_t timeout;
  if (!arg_i32(env, argv[1], "timeoutMs", &timeout)) return NULL;
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, "socket", errno);
  return connect_fd(env, fd, (struct sockaddr *)&sa, sizeof sa, timeout, false);
}

// Starts a read wait on an fd the caller keeps: tried at once, registered only if nothing is there yet.
static napi_value start_read(napi_env env, wait_op *op, napi_value promise, int32_t timeout, const char *name) {
  const char *syscall;
  int err = wait_read(op, &syscall);
  if (err == EAGAIN) {
    err = wait_start(env, op, EPOLLIN, timeout, name);
    if (!err) return promise;
    syscall = "epoll_ctl";
  }
  wait_settle(op, err, syscall, false);
  return promise;
}

// peekHead(fd, maxBytes, timeoutMs): Promise<Buffer> of the bytes queued on fd once it is readable, read
// with MSG_PEEK (they stay in the kernel: whoever handles the connection next reads them again), at
// most maxBytes; empty at EOF. ETIMEDOUT if nothing arrives within timeoutMs.
static napi_value PeekHead(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  int32_t fd, max, timeout;
  if (!arg_i32(env, argv[0], "fd", &fd) || !arg_i32(env, argv[1], "maxBytes", &max) ||
      !arg_i32(env, argv[2], "timeoutMs", &timeout))
    return NULL;
  if (fd < 0 || max <= 0 || max > (1 << 20)) return throw_errno(env, "peekHead", EINVAL);
  napi_value promise;
  wait_op *op = wait_new(env, WAIT_PEEK, fd, &promise);
  if (!op) return NULL;
  op->want = (size_t)max;
  op->buf = malloc(op->want);
  if (!op->buf) {
    wait_settle(op, ENOMEM, "malloc", false);
    return promise;
  }
  return start_read(env, op, promise, timeout, "cloister.peekHead");
}

// readFrame(fd, timeoutMs): Promise<Buffer> of one [u16 LE length][body] frame's body, read exactly (the
// bytes after it stay in the kernel); empty for a zero-length frame. ECONNRESET at EOF before the end
// of the frame, ETIMEDOUT after timeoutMs.
static napi_value ReadFrame(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd, timeout;
  if (!arg_i32(env, argv[0], "fd", &fd) || !arg_i32(env, argv[1], "timeoutMs", &timeout)) return NULL;
  if (fd < 0) return throw_errno(env, "readFrame", EBADF);
  napi_value promise;
  wait_op *op = wait_new(env, WAIT_FRAME, fd, &promise);
  if (!op) return NULL;
  op->want = (size_t)-1;
  return start_read(env, op, promise, timeout, "cloister.readFrame");
}

// recvDiscard(fd, n): drops exactly n bytes already queued on fd (a request head that was peeked).
// Throws EAGAIN if fewer are there.
static napi_value RecvDiscard(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd, n;
  if (!arg_i32(env, argv[0], "fd", &fd) || !arg_i32(env, argv[1], "n", &n)) return NULL;
  static __thread uint8_t sink[16384];
  while (n > 0) {
    ssize_t r = recv(fd, sink, n < (int32_t)sizeof sink ? (size_t)n : sizeof sink, MSG_DONTWAIT);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return throw_errno(env, "recv", errno);
    if (r == 0) return throw_errno(env, "recv", ECONNRESET);
    n -= (int32_t)r;
  }
  return undefined(env);
}

// sendAll(fd, bytes): writes bytes now or throws: EAGAIN if the socket took none or only part, after
// which the stream is unusable (the caller closes it). A request frame on a fresh connection fits its
// send buffer.
static napi_value SendAll(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd;
  void *data;
  size_t len;
  if (!arg_i32(env, argv[0], "fd", &fd) || !arg_u8(env, argv[1], "bytes", &data, &len)) return NULL;
  ssize_t n;
  do n = send(fd, data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0) return throw_errno(env, "send", errno);
  if ((size_t)n != len) return throw_errno(env, "send", EAGAIN);
  return undefined(env);
}

// shutdownFd(fd): shutdown(SHUT_RDWR), which wakes any wait on fd (it then reads EOF): how a service
// that is closing ends the waits of connections it has not handed on yet.
static napi_value ShutdownFd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t fd;
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  if (shutdown(fd, SHUT_RDWR) < 0 && errno != ENOTCONN) return throw_errno(env, "shutdown", errno);
  return undefined(env);
}

bool init_fdwait(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      FUNCTION("tcpConnect", TcpConnect),   FUNCTION("unixConnect", UnixConnect),
      FUNCTION("peekHead", PeekHead),       FUNCTION("readFrame", ReadFrame),
      FUNCTION("recvDiscard", RecvDiscard), FUNCTION("sendAll", SendAll),
      FUNCTION("shutdownFd", ShutdownFd),
  };
  return define_functions(env, exports, props, sizeof props / sizeof props[0]);
}
