// Errors, argument checks and async work shared by every unit (see common.h).
#include "common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

napi_value make_errno_error(napi_env env, const char *syscall, int err) {
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

napi_value throw_errno(napi_env env, const char *syscall, int err) {
  napi_throw(env, make_errno_error(env, syscall, err));
  return NULL;
}

// ---------------------------------------------------------------------------------------------
// arguments

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
bool arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out) {
  double d;
  if (!arg_integer(env, v, what, 0, 4294967295.0, "[0, 2^32-1]", &d)) return false;
  *out = (uint32_t)d;
  return true;
}

// An int32 argument (fd, backlog, pid, timeout).
bool arg_i32(napi_env env, napi_value v, const char *what, int32_t *out) {
  double d;
  if (!arg_integer(env, v, what, -2147483648.0, 2147483647.0, "[-2^31, 2^31-1]", &d)) return false;
  *out = (int32_t)d;
  return true;
}

// A Uint8Array argument: its bytes and length, or a TypeError naming the argument.
bool arg_u8(napi_env env, napi_value v, const char *what, void **data, size_t *length) {
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

bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
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

napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

bool arg_function(napi_env env, napi_value v, const char *what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) == napi_ok && t == napi_function) return true;
  char m[96];
  snprintf(m, sizeof m, "%s must be a function", what);
  napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", m);
  return false;
}

bool define_functions(napi_env env, napi_value exports, const napi_property_descriptor *props, size_t n) {
  return napi_define_properties(env, exports, n, props) == napi_ok;
}

// ---------------------------------------------------------------------------------------------
// async work

static void op_free(async_op *op) {
  if (op->release) op->release(op);
  free(op);
}

static void async_execute(napi_env env, void *data) {
  (void)env;
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
  op_free(op);
}

napi_value queue_op(napi_env env, async_op *op, const char *name) {
  napi_value promise, resource_name;
  if (napi_create_promise(env, &op->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &resource_name) != napi_ok ||
      napi_create_async_work(env, NULL, resource_name, async_execute, async_complete, op, &op->work) !=
          napi_ok ||
      napi_queue_async_work(env, op->work) != napi_ok) {
    op_free(op);
    napi_throw_error(env, NULL, "could not queue async work");
    return NULL;
  }
  return promise;
}
