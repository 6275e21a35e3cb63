// The Nitro Security Module: nsmOpen and nsmRequest (NSM_IOCTL_RAW on /dev/nsm). The ioctl may wait
// up to 120 s in the driver, so it runs on libuv's thread pool and settles a promise.
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

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

typedef struct {
  async_op base;  // first: the async_op pointer is the nsm_op pointer
  int fd;
  uint8_t *req;
  size_t req_len;
  uint8_t *resp;
  uint64_t resp_len;
} nsm_op;

static void nsm_release(async_op *base) {
  nsm_op *op = (nsm_op *)base;
  free(op->req);
  free(op->resp);
}

static void nsm_exec(async_op *base) {
  nsm_op *op = (nsm_op *)base;
  struct nsm_raw raw;
  memset(&raw, 0, sizeof raw);
  raw.request.addr = (uint64_t)(uintptr_t)op->req;
  raw.request.len = op->req_len;
  raw.response.addr = (uint64_t)(uintptr_t)op->resp;
  raw.response.len = NSM_RESPONSE_MAX_SIZE;
  base->syscall = "ioctl";
  int r;
  do r = ioctl(op->fd, NSM_IOCTL_RAW, &raw);
  while (r < 0 && errno == EINTR);
  if (r < 0) {
    base->err = errno;
    return;
  }
  // The driver writes min(capacity, device length) and reports that; anything larger is a broken
  // driver (or an impostor) and must not make us read past the buffer.
  if (raw.response.len > NSM_RESPONSE_MAX_SIZE) {
    base->err = EOVERFLOW;
    return;
  }
  op->resp_len = raw.response.len;
}

static napi_value nsm_result(napi_env env, async_op *base) {
  nsm_op *op = (nsm_op *)base;
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
  nsm_op *op = calloc(1, sizeof *op);
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
  op->base.exec = nsm_exec;
  op->base.result = nsm_result;
  op->base.release = nsm_release;
  return queue_op(env, &op->base, "cloister.nsmRequest");
}

bool init_nsm(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      FUNCTION("nsmOpen", NsmOpen),
      FUNCTION("nsmRequest", NsmRequest),
  };
  return define_functions(env, exports, props, sizeof props / sizeof props[0]);
}
