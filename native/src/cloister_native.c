// cloister's native addon: the few syscalls Node cannot make (AF_VSOCK sockets, the NSM ioctl,
// bringing up lo, crediting entropy, child-subreaper reaping, pipe2). Everything else stays in TypeScript.
//
// Plain C against node_api.h (N-API 8) so one build loads in Node 20, 24 and 26. Calls that can block
// (vsock connect, the NSM ioctl, which may wait up to 120 s in the driver) run on the libuv thread pool
// through napi_create_async_work and settle a promise; the rest are quick and synchronous.
// Errors are Error objects with `code` = errno name (ECONNREFUSED, EMSGSIZE...), `errno` and `syscall`.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/random.h>
#include <linux/vm_sockets.h>

#include <node_api.h>
#include <uv.h>

// NSM uapi (include/uapi/linux/nsm.h); defined here because older kernel headers lack the file.
#define NSM_REQUEST_MAX_SIZE 0x1000
#define NSM_RESPONSE_MAX_SIZE 0x3000
struct nsm_iovec {
  uint64_t addr;
  uint64_t len;
};
struct nsm_raw {
  struct nsm_iovec request;
  struct nsm_iovec response;
};
#define NSM_IOCTL_RAW _IOWR(0x0A, 0x0, struct nsm_raw)
_Static_assert(sizeof(struct nsm_raw) == 32, "nsm_raw must be 32 bytes");
_Static_assert(NSM_IOCTL_RAW == 0xC0200A00u, "NSM_IOCTL_RAW must be 0xC0200A00");

// ---------------------------------------------------------------------------------------------
// errors

static const char *errno_name(int e) {
  switch (e) {
#define E(x) \
  case x:    \
    return #x;
    E(EPERM) E(ENOENT) E(ESRCH) E(EINTR) E(EIO) E(ENXIO) E(E2BIG) E(ENOEXEC) E(EBADF) E(ECHILD)
    E(EAGAIN) E(ENOMEM) E(EACCES) E(EFAULT) E(EBUSY) E(EEXIST) E(ENODEV) E(ENOTDIR) E(EISDIR)
    E(EINVAL) E(ENFILE) E(EMFILE) E(ENOTTY) E(ENOSPC) E(EPIPE) E(ERANGE) E(ENOSYS) E(ENODATA)
    E(ETIME) E(EPROTO) E(EOVERFLOW) E(ENOTSOCK) E(EDESTADDRREQ) E(EMSGSIZE) E(EPROTOTYPE)
    E(ENOPROTOOPT) E(EPROTONOSUPPORT) E(ESOCKTNOSUPPORT) E(EOPNOTSUPP) E(EPFNOSUPPORT)
    E(EAFNOSUPPORT) E(EADDRINUSE) E(EADDRNOTAVAIL) E(ENETDOWN) E(ENETUNREACH) E(ENETRESET)
    E(ECONNABORTED) E(ECONNRESET) E(ENOBUFS) E(EISCONN) E(ENOTCONN) E(ESHUTDOWN) E(ETIMEDOUT)
    E(ECONNREFUSED) E(EHOSTDOWN) E(EHOSTUNREACH) E(EALREADY) E(EINPROGRESS) E(ECANCELED)
    E(ENAMETOOLONG)
#undef E
    default:
      return "UNKNOWN";
  }
}

static napi_value make_errno_error(napi_env env, const char *syscall, int err) {
  char msg[256];
  snprintf(msg, sizeof msg, "%s: %s (%s)", syscall, strerror(err), errno_name(err));
  napi_value code, message, error, num, sc;
  napi_create_string_utf8(env, errno_name(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, msg, NAPI_AUTO_LENGTH, &message);
  napi_create_error(env, code, message, &error);
  napi_create_int32(env, err, &num);
  napi_set_named_property(env, error, "errno", num);
  napi_create_string_utf8(env, syscall, NAPI_AUTO_LENGTH, &sc);
  napi_set_named_property(env, error, "syscall", sc);
  return error;
}

static napi_value throw_errno(napi_env env, const char *syscall, int err) {
  napi_throw(env, make_errno_error(env, syscall, err));
  return NULL;
}

#define NAPI_CALL(env, call)                                          \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      const napi_extended_error_info *info;                           \
      napi_get_last_error_info((env), &info);                         \
      bool pending;                                                   \
      napi_is_exception_pending((env), &pending);                     \
      if (!pending)                                                   \
        napi_throw_error((env), NULL,                                 \
                         info && info->error_message ? info->error_message \
                                                     : "N-API call failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

// A number argument that must be an exact integer in [lo, hi]. Reading it as a double first means NaN,
// fractions and out-of-range values are refused instead of silently truncated (napi_get_value_int32
// would turn NaN into 0 and 2^32+fd into fd: closeFd(NaN) would close stdin).
static bool arg_integer(napi_env env, napi_value v, const char *what, double lo, double hi, const char *range,
                        double *out) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok || t != napi_number) {
    char m[96];
    snprintf(m, sizeof m, "%s must be a number", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", m);
    return false;
  }
  double d;
  napi_get_value_double(env, v, &d);
  if (!(d >= lo && d <= hi) || d != (double)(int64_t)d) {
    char m[96];
    snprintf(m, sizeof m, "%s must be an integer in %s", what, range);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", m);
    return false;
  }
  *out = d;
  return true;
}

// A uint32 argument (cid, port).
static bool arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  double d;
  if (!arg_integer(env, v, what, 0, 4294967295.0, "[0, 2^32-1]", &d)) return false;
  *out = (uint32_t)d;
  return true;
}

// An int32 argument (fd, backlog, pid, timeout).
static bool arg_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  double d;
  if (!arg_integer(env, v, what, -2147483648.0, 2147483647.0, "[-2^31, 2^31-1]", &d)) return false;
  *out = (int32_t)d;
  return true;
}

// A Uint8Array argument: its bytes and length, or a TypeError naming the argument.
static bool arg_u8(napi_env env, napi_value v, const char *what, void **data, size_t *length) {
  bool is_ta = false;
  napi_typedarray_type type = napi_int8_array;
  napi_value ab;
  size_t offset;
  if (napi_is_typedarray(env, v, &is_ta) == napi_ok && is_ta) {
    napi_get_typedarray_info(env, v, &type, length, data, &ab, &offset);
  }
  if (!is_ta || type != napi_uint8_array) {
    char m[96];
    snprintf(m, sizeof m, "%s must be a Uint8Array", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", m);
    return false;
  }
  return true;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) {
    napi_throw_error(env, NULL, "could not read arguments");
    return false;
  }
  if (argc < want) {
    napi_throw_type_error(env, "ERR_MISSING_ARGS", "missing arguments");
    return false;
  }
  return true;
}

static napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

// ---------------------------------------------------------------------------------------------
// async work: one shape for every off-loop call. execute() runs on the thread pool and fills
// `err` (errno) or the result fields; complete() settles the promise on the loop thread.

typedef struct async_op async_op;
typedef void (*op_exec)(async_op *op);
typedef napi_value (*op_result)(napi_env env, async_op *op);

struct async_op {
  napi_async_work work;
  napi_deferred deferred;
  op_exec exec;
  op_result result;
  const char *syscall;
  int err;
  // vsock connect
  uint32_t cid, port;
  int timeout_ms;
  int fd;
  // nsm
  uint8_t *req;
  size_t req_len;
  uint8_t *resp;
  uint64_t resp_len;
};

static void async_execute(napi_env env, void *data) {
  async_op *op = data;
  op->exec(op);
}

static void async_complete(napi_env env, napi_status status, void *data) {
  async_op *op = data;
  if (status != napi_ok) {
    napi_value msg, e;
    napi_create_string_utf8(env, "async work cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &e);
    napi_reject_deferred(env, op->deferred, e);
  } else if (op->err) {
    napi_reject_deferred(env, op->deferred, make_errno_error(env, op->syscall, op->err));
  } else {
    napi_value r = op->result(env, op);
    if (r) {
      napi_resolve_deferred(env, op->deferred, r);
    } else {
      // result() threw (e.g. out of memory creating the buffer): hand the exception to the promise.
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_reject_deferred(env, op->deferred, exc);
    }
  }
  napi_delete_async_work(env, op->work);
  free(op->req);
  free(op->resp);
  free(op);
}

static napi_value queue_op(napi_env env, async_op *op, const char *name) {
  napi_value promise, resource_name;
  if (napi_create_promise(env, &op->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, async_execute, async_complete, op, &op->work) !=
          napi_ok ||
      napi_queue_async_work(env, op->work) != napi_ok) {
    free(op->req);
    free(op->resp);
    free(op);
    napi_throw_error(env, NULL, "could not queue async work");
    return NULL;
  }
  return promise;
}

// ---------------------------------------------------------------------------------------------
// AF_VSOCK

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

static void connect_exec(async_op *op) {
  int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    op->syscall = "socket";
    op->err = errno;
    return;
  }
  struct sockaddr_vm sa;
  memset(&sa, 0, sizeof sa);
  sa.svm_family = AF_VSOCK;
  sa.svm_cid = op->cid;
  sa.svm_port = op->port;
  op->syscall = "connect";
  int r;
  do r = connect(fd, (struct sockaddr *)&sa, sizeof sa);
  while (r < 0 && errno == EINTR);
  if (r < 0 && errno != EINPROGRESS && errno != EALREADY) {
    op->err = errno;
    close(fd);
    return;
  }
  if (r < 0) {
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    int n;
    do n = poll(&p, 1, op->timeout_ms < 0 ? -1 : op->timeout_ms);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
      op->err = errno;
      close(fd);
      return;
    }
    if (n == 0) {
      op->err = ETIMEDOUT;
      close(fd);
      return;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) soerr = errno;
    if (soerr) {
      op->err = soerr;
      close(fd);
      return;
    }
  }
  op->fd = fd;
}

static napi_value fd_result(napi_env env, async_op *op) {
  napi_value r;
  if (napi_create_int32(env, op->fd, &r) != napi_ok) {
    close(op->fd);
    return NULL;
  }
  return r;
}

// vsockConnect(cid, port, timeoutMs): Promise<fd> of a connected, non-blocking socket.
static napi_value VsockConnect(napi_env env, napi_callback_info info) {
  napi_value argv[3];
  if (!get_args(env, info, 3, argv)) return NULL;
  uint32_t cid, port;
  int32_t timeout;
  if (!arg_u32(env, argv[0], "cid", &cid) || !arg_u32(env, argv[1], "port", &port) ||
      !arg_i32(env, argv[2], "timeoutMs", &timeout))
    return NULL;
  async_op *op = calloc(1, sizeof *op);
  if (!op) return throw_errno(env, "calloc", ENOMEM);
  op->exec = connect_exec;
  op->result = fd_result;
  op->cid = cid;
  op->port = port;
  op->timeout_ms = timeout;
  op->fd = -1;
  return queue_op(env, op, "cloister.vsockConnect");
}

// closeFd(fd): for fds never handed to libuv (a failed bind, a device).
static napi_value CloseFd(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t fd;
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  if (close(fd) < 0 && errno != EINTR) return throw_errno(env, "close", errno);
  return undefined(env);
}

// makePipe(): [readFd, writeFd], both close-on-exec. Node has no pipe(): the supervisor hands the write
// end to the app as both stdout and stderr (spawn dup2()s it onto fds 1 and 2, which clears
// close-on-exec there), so the app's two streams reach the log in the order it wrote them.
static napi_value MakePipe(napi_env env, napi_callback_info info) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0) return throw_errno(env, "pipe2", errno);
  napi_value r, rd, wr;
  if (napi_create_array_with_length(env, 2, &r) != napi_ok || napi_create_int32(env, fds[0], &rd) != napi_ok ||
      napi_create_int32(env, fds[1], &wr) != napi_ok || napi_set_element(env, r, 0, rd) != napi_ok ||
      napi_set_element(env, r, 1, wr) != napi_ok) {
    // Nobody else knows these fds: close them rather than leak them.
    close(fds[0]);
    close(fds[1]);
    bool pending;
    napi_is_exception_pending(env, &pending);
    if (!pending) napi_throw_error(env, NULL, "makePipe: could not build the result");
    return NULL;
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// NSM

// nsmOpen(path): fd, opened O_RDWR like nsm-api's driver.
static napi_value NsmOpen(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char path[4096];
  size_t len;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "path must be a string");
    return NULL;
  }
  // A longer string comes back cut to fit, and a NUL ends the C string early: either way open() would
  // name another file than the caller's.
  if (len >= sizeof path - 1) return throw_errno(env, "open", ENAMETOOLONG);
  if (strlen(path) != len) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", "path must not contain NUL bytes");
    return NULL;
  }
  int fd = open(path, O_RDWR | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open", errno);
  napi_value r;
  NAPI_CALL(env, napi_create_int32(env, fd, &r));
  return r;
}

static void nsm_exec(async_op *op) {
  struct nsm_raw raw;
  memset(&raw, 0, sizeof raw);
  raw.request.addr = (uint64_t)(uintptr_t)op->req;
  raw.request.len = op->req_len;
  raw.response.addr = (uint64_t)(uintptr_t)op->resp;
  raw.response.len = NSM_RESPONSE_MAX_SIZE;
  op->syscall = "ioctl";
  int r;
  do r = ioctl(op->fd, NSM_IOCTL_RAW, &raw);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    op->err = errno;
    return;
  }
  // The driver writes min(capacity, device length) and reports that; anything larger is a broken
  // driver (or an impostor) and must not make us read past the buffer.
  if (raw.response.len > NSM_RESPONSE_MAX_SIZE) {
    op->err = EOVERFLOW;
    return;
  }
  op->resp_len = raw.response.len;
}

static napi_value nsm_result(napi_env env, async_op *op) {
  napi_value buf;
  void *data;
  if (napi_create_buffer_copy(env, op->resp_len, op->resp, &data, &buf) != napi_ok) return NULL;
  return buf;
}

// nsmRequest(fd, request): Promise<Buffer> with the device's reply (at most 12288 bytes).
static napi_value NsmRequest(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  int32_t fd;
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  size_t length;
  void *data;
  if (!arg_u8(env, argv[1], "request", &data, &length)) return NULL;
  // Refused before the ioctl, as nsm-api does (the driver would answer EMSGSIZE).
  if (length > NSM_REQUEST_MAX_SIZE) return throw_errno(env, "nsmRequest", EMSGSIZE);
  async_op *op = calloc(1, sizeof *op);
  if (!op) return throw_errno(env, "calloc", ENOMEM);
  // Copied so the caller may reuse its buffer while the request is in flight.
  op->req = malloc(length ? length : 1);
  op->resp = malloc(NSM_RESPONSE_MAX_SIZE);
  if (!op->req || !op->resp) {
    free(op->req);
    free(op->resp);
    free(op);
    return throw_errno(env, "malloc", ENOMEM);
  }
  if (length) memcpy(op->req, data, length);
  op->req_len = length;
  op->fd = fd;
  op->exec = nsm_exec;
  op->result = nsm_result;
  return queue_op(env, op, "cloister.nsmRequest");
}

// ---------------------------------------------------------------------------------------------
// system bootstrap

// bringUpLoopback(): sets IFF_UP on "lo" (the kernel then assigns 127.0.0.1/8 and ::1).
static napi_value BringUpLoopback(napi_env env, napi_callback_info info) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return throw_errno(env, "socket", errno);
  struct ifreq ifr;
  memset(&ifr, 0, sizeof ifr);
  strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0) {
    int e = errno;
    close(s);
    return throw_errno(env, "ioctl(SIOCGIFFLAGS)", e);
  }
  if (!(ifr.ifr_flags & IFF_UP)) {
    ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0) {
      int e = errno;
      close(s);
      return throw_errno(env, "ioctl(SIOCSIFFLAGS)", e);
    }
  }
  close(s);
  return undefined(env);
}

// seedEntropy(bytes): { credited }. RNDADDENTROPY mixes the bytes in and credits 8 bits per byte
// (needs CAP_SYS_ADMIN); without the capability a plain write still mixes them in, uncredited.
static napi_value SeedEntropy(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  size_t length;
  void *data;
  if (!arg_u8(env, argv[0], "bytes", &data, &length)) return NULL;
  if (length > 1 << 20) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "at most 1 MiB of entropy at a time");
    return NULL;
  }
  int fd = open("/dev/random", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "open(/dev/random)", errno);
  bool credited = false;
  size_t words = (length + 3) / 4;
  struct rand_pool_info *rpi = calloc(1, sizeof *rpi + words * 4);
  if (!rpi) {
    close(fd);
    return throw_errno(env, "calloc", ENOMEM);
  }
  if (length) memcpy(rpi->buf, data, length);
  rpi->entropy_count = (int)(length * 8);
  rpi->buf_size = (int)length;
  if (ioctl(fd, RNDADDENTROPY, rpi) == 0) {
    credited = true;
  } else if (errno == EPERM || errno == EACCES) {
    size_t off = 0;
    while (off < length) {
      ssize_t w = write(fd, (const uint8_t *)data + off, length - off);
      if (w < 0) {
        if (errno == EINTR) continue;
        int e = errno;
        free(rpi);
        close(fd);
        return throw_errno(env, "write(/dev/random)", e);
      }
      off += (size_t)w;
    }
  } else {
    int e = errno;
    free(rpi);
    close(fd);
    return throw_errno(env, "ioctl(RNDADDENTROPY)", e);
  }
  explicit_bzero(rpi, sizeof *rpi + words * 4);
  free(rpi);
  close(fd);
  napi_value o, c;
  NAPI_CALL(env, napi_create_object(env, &o));
  NAPI_CALL(env, napi_get_boolean(env, credited, &c));
  NAPI_CALL(env, napi_set_named_property(env, o, "credited", c));
  return o;
}

// setChildSubreaper(): orphaned descendants are re-parented to this process instead of init.
static napi_value SetChildSubreaper(napi_env env, napi_callback_info info) {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) return throw_errno(env, "prctl", errno);
  return undefined(env);
}

// reapZombie(pid): waitpid(pid, WNOHANG) -> raw status, or null while it still runs. Only a
// positive pid: waitpid(-1) would steal the exit statuses of children libuv is waiting for.
static napi_value ReapZombie(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t pid;
  if (!arg_i32(env, argv[0], "pid", &pid)) return NULL;
  if (pid <= 0) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "pid must be a positive integer");
    return NULL;
  }
  int status = 0;
  pid_t r;
  do r = waitpid(pid, &status, WNOHANG);
  while (r < 0 && errno == EINTR);
  if (r < 0) return throw_errno(env, "waitpid", errno);
  napi_value v;
  if (r == 0) {
    NAPI_CALL(env, napi_get_null(env, &v));
  } else {
    NAPI_CALL(env, napi_create_int32(env, status, &v));
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// splice pump: joins two connected stream sockets in the kernel. Bytes go socket -> pipe -> socket
// with splice(2), never entering user space. Event-driven on the caller's libuv loop (one epoll fd
// per thread for all pumps, see pump_poller; no thread per tunnel): each direction reads only when
// its pipe is empty and writes only when it holds bytes, so a slow reader backs up into the kernel
// socket buffers, not into memory here. The fds are dup()ed: the caller keeps (and later closes) its
// own, and Node's watcher and ours never share one fd number. EOF on one side becomes shutdown(SHUT_WR) on the other while the other direction
// keeps flowing; an error on either side, cancel(), or the idle timeout ends both.

// A bulk direction's pipe grows to this: as fast here as 1 MiB (bench/egress.ts), and it bounds what a
// stalled reader can park in the pipe to what the stream engine's 256 KiB write buffer held.
#define PUMP_PIPE_SIZE (256 << 10)
#define PUMP_CHUNK PUMP_PIPE_SIZE

typedef struct {
  int from, to;  // indexes into pump.fd
  int pipe_r, pipe_w;
  size_t in_pipe;
  bool eof;       // read side reached EOF
  bool shut;      // EOF passed on with shutdown(SHUT_WR)
  bool grown;     // pipe enlarged to PUMP_PIPE_SIZE
  bool copy_in;   // the kernel refused splice from `from`: fill the pipe with read() + write()
  uint64_t bytes; // bytes written to `to`
} pump_dir;

typedef struct {
  napi_env env;
  napi_ref callback;
  napi_async_context async_ctx;
  uv_loop_t *loop;
  int fd[2];
  struct pump_poller *poller;
  uint32_t poll_events[2];  // EPOLLIN/EPOLLOUT registered for fd[i] in the poller (0: not registered)
  uv_timer_t timer;
  uint64_t idle_ms;
  uint64_t last_activity;
  pump_dir dir[2];
  int err;              // first errno (0: clean end)
  const char *syscall;  // where it happened
  bool finishing;
  bool env_gone;  // the JS environment is being torn down (worker exit): no callback into it
  int open_handles;
  int refs;  // 1 for the running pump, 1 for the JS handle object
} pump;

// Pipe pairs of finished pumps, kept for the next tunnels on this thread: a short request/response
// tunnel otherwise pays pipe2() + two close() per direction, per process, plus the kernel's allocation
// and teardown of the pipe (a measurable share of a connection's cost). Only a pair known to be empty
// and still at the default size comes back; a grown (bulk) pipe is closed so idle pairs hold no quota.
#define PIPE_POOL_MAX 32
typedef struct {
  int r, w;
} pipe_pair;
static __thread pipe_pair pipe_pool[PIPE_POOL_MAX];
static __thread int pipe_pool_len;
static __thread bool pipe_pool_hooked;

static void pipe_pool_cleanup(void *arg) {
  (void)arg;
  while (pipe_pool_len > 0) {
    pipe_pair *pp = &pipe_pool[--pipe_pool_len];
    close(pp->r);
    close(pp->w);
  }
  pipe_pool_hooked = false;
}

static void pipe_release(pump *p, pump_dir *d) {
  if (d->pipe_r < 0) return;
  if (d->in_pipe == 0 && !d->grown && !p->env_gone && pipe_pool_hooked && pipe_pool_len < PIPE_POOL_MAX) {
    pipe_pool[pipe_pool_len++] = (pipe_pair){d->pipe_r, d->pipe_w};
  } else {
    close(d->pipe_r);
    close(d->pipe_w);
  }
  d->pipe_r = d->pipe_w = -1;
}

// One epoll fd per thread watches every pump's sockets, and one uv_poll_t on it wakes this loop. With a
// uv_poll_t per socket, each pump paid 10 syscalls before its first byte (uv_poll_init probes the fd with
// epoll_ctl ADD+DEL and sets FIONBIO; uv_poll_start first DELs it), and 2 more to stop; here it is one
// epoll_ctl to register each fd and one to drop it. The events carry the pump pointer with the fd's
// index in its low bit.
typedef struct pump_poller {
  int fd;
  uv_poll_t handle;
  int live;  // running pumps: the handle keeps the loop alive only while there are some
} pump_poller;
static __thread pump_poller *poller;

static void poller_closed(uv_handle_t *h) {
  pump_poller *pl = h->data;
  close(pl->fd);
  free(pl);
}

// The environment goes away: its pumps were finished by their own hooks, which run before this one.
// No close callback: it could run after a worker's copy of the addon is unloaded. uv_close already
// drops the fd from the loop's epoll, so the fd can go now; the few bytes of the handle are left
// to libuv (once per thread exit).
static void poller_cleanup(void *arg) {
  pump_poller *pl = arg;
  if (poller == pl) poller = NULL;
  uv_close((uv_handle_t *)&pl->handle, NULL);
  close(pl->fd);
}

static void poller_cb(uv_poll_t *h, int status, int events);

static pump_poller *get_poller(napi_env env, uv_loop_t *loop, int *err) {
  if (poller) return poller;
  pump_poller *pl = calloc(1, sizeof *pl);
  if (!pl) {
    *err = ENOMEM;
    return NULL;
  }
  pl->fd = epoll_create1(EPOLL_CLOEXEC);
  if (pl->fd < 0) {
    *err = errno;
    free(pl);
    return NULL;
  }
  int r = uv_poll_init(loop, &pl->handle, pl->fd);
  if (r < 0) {
    // libuv may still reference the handle: leak it rather than free memory the loop may touch.
    *err = -r;
    close(pl->fd);
    return NULL;
  }
  pl->handle.data = pl;
  r = uv_poll_start(&pl->handle, UV_READABLE, poller_cb);
  if (r < 0) {
    *err = -r;
    uv_close((uv_handle_t *)&pl->handle, poller_closed);
    return NULL;
  }
  uv_unref((uv_handle_t *)&pl->handle);
  // Registered before any pump's hook, so it runs after them (hooks run in reverse order).
  napi_add_env_cleanup_hook(env, poller_cleanup, pl);
  poller = pl;
  return pl;
}

static void pump_unref(pump *p) {
  if (--p->refs == 0) free(p);
}

static void pump_handle_closed(uv_handle_t *h) {
  pump *p = h->data;
  if (--p->open_handles > 0) return;
  for (int i = 0; i < 2; i++) {
    if (p->fd[i] >= 0) close(p->fd[i]);
    pipe_release(p, &p->dir[i]);
  }
  if (p->env_gone) {
    pump_unref(p);
    return;
  }
  napi_env env = p->env;
  napi_handle_scope scope;
  napi_open_handle_scope(env, &scope);
  napi_value cb, recv, argv[3];
  napi_get_reference_value(env, p->callback, &cb);
  napi_get_global(env, &recv);  // make_callback wants an object receiver
  if (p->err)
    argv[0] = make_errno_error(env, p->syscall, p->err);
  else
    napi_get_null(env, &argv[0]);
  napi_create_double(env, (double)p->dir[0].bytes, &argv[1]);
  napi_create_double(env, (double)p->dir[1].bytes, &argv[2]);
  napi_value result;
  // make_callback (not call_function): runs the microtask and nextTick queues afterwards, as any
  // libuv-driven callback into JS must.
  if (cb && napi_make_callback(env, p->async_ctx, recv, cb, 3, argv, &result) != napi_ok) {
    // A throwing callback is an uncaught exception, as for any event-loop callback.
    bool pending = false;
    napi_is_exception_pending(env, &pending);
    if (pending) {
      napi_value exc;
      napi_get_and_clear_last_exception(env, &exc);
      napi_fatal_exception(env, exc);
    }
  }
  napi_delete_reference(env, p->callback);
  napi_async_destroy(env, p->async_ctx);
  napi_close_handle_scope(env, scope);
  pump_unref(p);
}

static void pump_env_cleanup(void *arg);

static void pump_finish(pump *p, const char *syscall, int err) {
  if (p->finishing) return;
  p->finishing = true;
  if (!p->env_gone) napi_remove_env_cleanup_hook(p->env, pump_env_cleanup, p);
  p->err = err;
  p->syscall = syscall;
  // Dropped from the poller now, before the fds close; events already fetched for this pump in the
  // current batch are skipped (finishing), and the memory lives until the timer's close callback.
  for (int i = 0; i < 2; i++) {
    if (p->poll_events[i]) epoll_ctl(p->poller->fd, EPOLL_CTL_DEL, p->fd[i], NULL);
    p->poll_events[i] = 0;
  }
  if (--p->poller->live == 0) uv_unref((uv_handle_t *)&p->poller->handle);
  uv_close((uv_handle_t *)&p->timer, pump_handle_closed);
}

// The environment (a worker thread) goes away with the pump still running: close it quietly, so
// the loop can close; the JS side is gone with the environment.
static void pump_env_cleanup(void *arg) {
  pump *p = arg;
  p->env_gone = true;
  if (!p->finishing) pump_finish(p, NULL, 0);
}

// read() from a socket into the (empty) pipe: the fallback when the kernel refuses splice from it.
// 64 KiB is a default pipe's capacity, so the write of what was read never falls short; if it ever
// did, the bytes cannot be put back: EIO ends the pump rather than lose them silently.
#define PUMP_COPY_CHUNK (64 << 10)
static __thread char pump_copy_buf[PUMP_COPY_CHUNK];
static ssize_t pump_copy_in(int from, int pipe_w) {
  ssize_t n = read(from, pump_copy_buf, PUMP_COPY_CHUNK);
  if (n <= 0) return n;
  ssize_t w = write(pipe_w, pump_copy_buf, (size_t)n);
  if (w != n) {
    errno = EIO;
    return -1;
  }
  return n;
}

// Moves what it can in one direction; returns false when the pump was finished.
static bool pump_run_dir(pump *p, pump_dir *d) {
  for (;;) {
    if (d->in_pipe > 0) {
      ssize_t n = splice(d->pipe_r, NULL, p->fd[d->to], NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        d->in_pipe -= (size_t)n;
        d->bytes += (uint64_t)n;
        p->last_activity = uv_now(p->loop);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) return true;
      pump_finish(p, "splice", n < 0 ? errno : EPIPE);
      return false;
    }
    if (d->eof) {
      if (!d->shut) {
        d->shut = true;
        if (shutdown(p->fd[d->to], SHUT_WR) < 0 && errno != ENOTCONN) {
          pump_finish(p, "shutdown", errno);
          return false;
        }
      }
      return true;
    }
    if (d->pipe_w < 0) {
      // Taken on first use (from the pool, else a new default-size pipe): a tunnel that never carries
      // bytes one way needs no pipe for that direction.
      int pp[2];
      if (pipe_pool_len > 0) {
        pipe_pair *pooled = &pipe_pool[--pipe_pool_len];
        pp[0] = pooled->r;
        pp[1] = pooled->w;
      } else if (pipe2(pp, O_NONBLOCK | O_CLOEXEC) < 0) {
        pump_finish(p, "pipe2", errno);
        return false;
      }
      d->pipe_r = pp[0];
      d->pipe_w = pp[1];
    }
    ssize_t n = d->copy_in ? pump_copy_in(p->fd[d->from], d->pipe_w)
                           : splice(p->fd[d->from], NULL, d->pipe_w, NULL, PUMP_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n < 0 && errno == EINVAL && !d->copy_in) {
      // Before Linux 5.x a socket whose protocol has no splice_read cannot be spliced from: 4.14, the
      // kernel of Nitro Enclaves, answers EINVAL for AF_VSOCK (net/socket.c sock_splice_read). Nothing
      // was read, so this direction copies through user space from now on; the pipe -> socket half
      // (sendpage, which every socket has) stays zero-copy. See docs/lab.md.
      d->copy_in = true;
      continue;
    }
    if (n < 0 && errno == EIO && d->copy_in) {
      pump_finish(p, "write", EIO);
      return false;
    }
    if (n > 0) {
      // A read that filled the default 64 KiB pipe is a bulk transfer: bigger pipes mean fewer wakeups
      // per MiB. Refused (unprivileged, over the user's pipe quota) is fine.
      if (!d->grown && n >= 65536) {
        d->grown = true;
        fcntl(d->pipe_w, F_SETPIPE_SZ, PUMP_PIPE_SIZE);
      }
      d->in_pipe = (size_t)n;
      p->last_activity = uv_now(p->loop);
      continue;
    }
    if (n == 0) {
      d->eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return true;
    pump_finish(p, "splice", errno);
    return false;
  }
}

// Runs the directions an event concerns (run[i]), then re-arms each fd for exactly what is waited on.
static void pump_step(pump *p, const bool run[2]) {
  for (int i = 0; i < 2; i++)
    if (run[i] && !pump_run_dir(p, &p->dir[i])) return;
  if (p->dir[0].shut && p->dir[1].shut) return pump_finish(p, NULL, 0);
  int want[2] = {0, 0};
  for (int i = 0; i < 2; i++) {
    pump_dir *d = &p->dir[i];
    if (d->in_pipe > 0) want[d->to] |= EPOLLOUT;
    else if (!d->eof) want[d->from] |= EPOLLIN;
  }
  for (int i = 0; i < 2; i++) {
    if ((uint32_t)want[i] == p->poll_events[i]) continue;
    struct epoll_event e = {.events = (uint32_t)want[i], .data.u64 = (uint64_t)(uintptr_t)p | (uint64_t)i};
    int op = !want[i] ? EPOLL_CTL_DEL : p->poll_events[i] ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
    int r = epoll_ctl(p->poller->fd, op, p->fd[i], &e);
    if (r < 0) return pump_finish(p, "epoll_ctl", errno);
    p->poll_events[i] = (uint32_t)want[i];
  }
}

// An event on fd i of pump p (as libuv's uv_poll did: an error ends the pump, a hang-up wakes what was
// waited on, and the splice calls then find the EOF or the error).
static void pump_fd_event(pump *p, int i, uint32_t events) {
  if (p->finishing) return;
  if (events & EPOLLERR) {
    // The socket's own error (ECONNRESET...) says what happened.
    int err = EBADF;
    for (int j = 0; j < 2; j++) {
      int soerr = 0;
      socklen_t len = sizeof soerr;
      if (getsockopt(p->fd[j], SOL_SOCKET, SO_ERROR, &soerr, &len) == 0 && soerr) {
        err = soerr;
        break;
      }
    }
    return pump_finish(p, "poll", err);
  }
  if (events & EPOLLHUP) events |= p->poll_events[i];
  // dir[i] reads from fd i and writes to fd 1-i.
  bool run[2];
  run[i] = (events & EPOLLIN) != 0;
  run[1 - i] = (events & EPOLLOUT) != 0;
  pump_step(p, run);
}

static void poller_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  pump_poller *pl = h->data;
  struct epoll_event ev[64];
  int n;
  do n = epoll_wait(pl->fd, ev, 64, 0);
  while (n < 0 && errno == EINTR);
  for (int k = 0; k < n; k++) {
    uint64_t tag = ev[k].data.u64;
    pump_fd_event((pump *)(uintptr_t)(tag & ~(uint64_t)1), (int)(tag & 1), ev[k].events);
  }
}

static void pump_timer_cb(uv_timer_t *t) {
  pump *p = t->data;
  if (p->finishing) return;
  uint64_t idle = uv_now(p->loop) - p->last_activity;
  if (idle >= p->idle_ms) return pump_finish(p, "idle timeout", ETIMEDOUT);
  uv_timer_start(&p->timer, pump_timer_cb, p->idle_ms - idle, 0);
}

static void pump_handle_finalize(napi_env env, void *data, void *hint) {
  pump_unref(data);
}

// spliceJoin(fdA, fdB, idleMs, callback(err, aToB, bToA)) -> handle for spliceCancel. The fds are
// dup()ed; the caller stops its own reading first and closes its fds after the callback.
static napi_value SpliceJoin(napi_env env, napi_callback_info info) {
  napi_value argv[4];
  if (!get_args(env, info, 4, argv)) return NULL;
  int32_t fa, fb, idle;
  if (!arg_i32(env, argv[0], "fdA", &fa) || !arg_i32(env, argv[1], "fdB", &fb) ||
      !arg_i32(env, argv[2], "idleMs", &idle))
    return NULL;
  napi_valuetype t;
  napi_typeof(env, argv[3], &t);
  if (t != napi_function) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "callback must be a function");
    return NULL;
  }
  if (fa < 0 || fb < 0 || fa == fb) return throw_errno(env, "spliceJoin", EBADF);
  uv_loop_t *loop;
  NAPI_CALL(env, napi_get_uv_event_loop(env, &loop));
  pump *p = calloc(1, sizeof *p);
  if (!p) return throw_errno(env, "calloc", ENOMEM);
  p->fd[0] = p->fd[1] = -1;
  for (int i = 0; i < 2; i++) p->dir[i].pipe_r = p->dir[i].pipe_w = -1;
  int err = 0;
  const char *sc = NULL;
  int src[2] = {fa, fb};
  for (int i = 0; i < 2 && !err; i++) {
    p->fd[i] = fcntl(src[i], F_DUPFD_CLOEXEC, 3);
    if (p->fd[i] < 0) err = errno, sc = "dup";
  }
  for (int i = 0; i < 2; i++) {
    p->dir[i].from = i;
    p->dir[i].to = 1 - i;
  }
  if (!pipe_pool_hooked) {
    // Registered before the pump's own hook, so it runs after it (hooks run in reverse order).
    napi_add_env_cleanup_hook(env, pipe_pool_cleanup, NULL);
    pipe_pool_hooked = true;
  }
  if (!err) {
    p->poller = get_poller(env, loop, &err);
    if (!p->poller) sc = "epoll_create1";
  }
  if (err) {
    for (int i = 0; i < 2; i++)
      if (p->fd[i] >= 0) close(p->fd[i]);
    free(p);
    return throw_errno(env, sc, err);
  }
  p->env = env;
  p->loop = loop;
  p->refs = 2;
  p->open_handles = 1;
  if (p->poller->live++ == 0) uv_ref((uv_handle_t *)&p->poller->handle);
  p->idle_ms = idle > 0 ? (uint64_t)idle : 0;
  p->last_activity = uv_now(loop);
  uv_timer_init(loop, &p->timer);
  p->timer.data = p;
  napi_value name, handle;
  napi_create_string_utf8(env, "cloister.spliceJoin", NAPI_AUTO_LENGTH, &name);
  napi_create_reference(env, argv[3], 1, &p->callback);
  napi_async_init(env, NULL, name, &p->async_ctx);
  napi_add_env_cleanup_hook(env, pump_env_cleanup, p);
  if (napi_create_external(env, p, pump_handle_finalize, NULL, &handle) != napi_ok) p->refs = 1;
  if (p->idle_ms) {
    uv_timer_start(&p->timer, pump_timer_cb, p->idle_ms, 0);
    uv_unref((uv_handle_t *)&p->timer);  // the polls keep the loop alive; the timer alone must not
  }
  // Nothing is tried up front: both fds wait for readable (level-triggered, so bytes already queued
  // in the kernel wake the first poll at once).
  bool run[2] = {false, false};
  pump_step(p, run);
  return handle;
}

// spliceCancel(handle): ends a pump now (its callback still runs, with ECANCELED). No-op once ended.
static napi_value SpliceCancel(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  void *data = NULL;
  if (napi_get_value_external(env, argv[0], &data) != napi_ok || data == NULL) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "handle must come from spliceJoin");
    return NULL;
  }
  pump *p = data;
  if (!p->finishing) pump_finish(p, "spliceCancel", ECANCELED);
  return undefined(env);
}

// ---------------------------------------------------------------------------------------------

// spliceIdlePipes() -> how many pipe pairs this thread's pool holds (at most PIPE_POOL_MAX): lets a
// leak check tell pooled pipes from lost ones.
static napi_value SpliceIdlePipes(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_int32(env, pipe_pool_len, &v);
  return v;
}

static napi_value Init(napi_env env, napi_value exports) {
  napi_property_descriptor props[] = {
      {"vsockSocket", NULL, VsockSocket, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vsockBind", NULL, VsockBind, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vsockListen", NULL, VsockListen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vsockConnect", NULL, VsockConnect, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vsockLocalAddress", NULL, VsockLocalAddress, NULL, NULL, NULL, napi_enumerable, NULL},
      {"vsockRemoteAddress", NULL, VsockRemoteAddress, NULL, NULL, NULL, napi_enumerable, NULL},
      {"closeFd", NULL, CloseFd, NULL, NULL, NULL, napi_enumerable, NULL},
      {"makePipe", NULL, MakePipe, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nsmOpen", NULL, NsmOpen, NULL, NULL, NULL, napi_enumerable, NULL},
      {"nsmRequest", NULL, NsmRequest, NULL, NULL, NULL, napi_enumerable, NULL},
      {"bringUpLoopback", NULL, BringUpLoopback, NULL, NULL, NULL, napi_enumerable, NULL},
      {"seedEntropy", NULL, SeedEntropy, NULL, NULL, NULL, napi_enumerable, NULL},
      {"setChildSubreaper", NULL, SetChildSubreaper, NULL, NULL, NULL, napi_enumerable, NULL},
      {"reapZombie", NULL, ReapZombie, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spliceJoin", NULL, SpliceJoin, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spliceCancel", NULL, SpliceCancel, NULL, NULL, NULL, napi_enumerable, NULL},
      {"spliceIdlePipes", NULL, SpliceIdlePipes, NULL, NULL, NULL, napi_enumerable, NULL},
  };
  if (napi_define_properties(env, exports, sizeof props / sizeof props[0], props) != napi_ok) return NULL;
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)
