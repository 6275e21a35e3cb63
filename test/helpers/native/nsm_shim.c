// Test-only LD_PRELOAD shim standing in for /dev/nsm (there is no NSM on a build machine).
// Intercepts open/openat of NSM_SHIM_DEVICE (default /dev/nsm), handing out an fd on /dev/null, and
// answers NSM_IOCTL_RAW on that fd the way the Linux driver does (drivers/misc/nsm.c):
//   - checks the ioctl number (0xC0200A00, else EINVAL) and the 32-byte {request, response} iovec layout;
//   - request.len > 4096 -> EMSGSIZE; copies min(response capacity, reply length) and sets response.len.
// Environment:
//   NSM_SHIM_RECORD   file to append one line per ioctl: "req=<hex> cap=<response capacity> busy=<n>"
//                     (busy = ioctls in progress on the device at entry, this one included)
//   NSM_SHIM_DELAY_MS hold each ioctl this long (makes overlapping calls visible)
//   NSM_SHIM_REPLY    reply bytes in hex (default: a GetRandom reply with 256 bytes 00..ff)
//   NSM_SHIM_MODE     "ok" (default) | "big" (a 13000-byte reply, silently truncated like the driver)
//                     | "overlong" (claims capacity+100 bytes written: a broken driver)
//                     | "errno:<n>" (fail the ioctl with errno n)
// Build: cc -shared -fPIC -o nsm_shim.so nsm_shim.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define NSM_IOCTL_RAW 0xC0200A00UL
#define REQ_MAX 4096
#define BIG_REPLY 13000

struct iov64 {
  uint64_t addr;
  uint64_t len;
};
struct nsm_raw {
  struct iov64 request;
  struct iov64 response;
};

static int nsm_fd = -1;

static const char *device_path(void) {
  const char *p = getenv("NSM_SHIM_DEVICE");
  return p ? p : "/dev/nsm";
}

static int is_device(const char *path) {
  return path && strcmp(path, device_path()) == 0;
}

static int fake_open(void) {
  static int (*real_open)(const char *, int, ...);
  if (!real_open) real_open = dlsym(RTLD_NEXT, "open");
  int fd = real_open("/dev/null", O_RDWR | O_CLOEXEC);
  if (fd >= 0) nsm_fd = fd;
  return fd;
}

#define OPEN_WRAPPER(name)                                 \
  int name(const char *path, int flags, ...) {             \
    static int (*real)(const char *, int, ...);            \
    mode_t mode = 0;                                       \
    if (flags & (O_CREAT | O_TMPFILE)) {                   \
      va_list ap;                                          \
      va_start(ap, flags);                                 \
      mode = va_arg(ap, mode_t);                           \
      va_end(ap);                                          \
    }                                                      \
    if (is_device(path)) return fake_open();               \
    if (!real) real = dlsym(RTLD_NEXT, #name);             \
    return real(path, flags, mode);                        \
  }
OPEN_WRAPPER(open)
OPEN_WRAPPER(open64)

#define OPENAT_WRAPPER(name)                                     \
  int name(int dirfd, const char *path, int flags, ...) {        \
    static int (*real)(int, const char *, int, ...);             \
    mode_t mode = 0;                                             \
    if (flags & (O_CREAT | O_TMPFILE)) {                         \
      va_list ap;                                                \
      va_start(ap, flags);                                       \
      mode = va_arg(ap, mode_t);                                 \
      va_end(ap);                                                \
    }                                                            \
    if (is_device(path)) return fake_open();                     \
    if (!real) real = dlsym(RTLD_NEXT, #name);                   \
    return real(dirfd, path, flags, mode);                       \
  }
OPENAT_WRAPPER(openat)
OPENAT_WRAPPER(openat64)

int close(int fd) {
  static int (*real)(int);
  if (!real) real = dlsym(RTLD_NEXT, "close");
  if (fd >= 0 && fd == nsm_fd) nsm_fd = -1;
  return real(fd);
}

static int busy;

static void record(const uint8_t *req, uint64_t len, uint64_t cap, int now_busy) {
  const char *file = getenv("NSM_SHIM_RECORD");
  if (!file) return;
  FILE *f = fopen(file, "a");
  if (!f) return;
  fputs("req=", f);
  for (uint64_t i = 0; i < len; i++) fprintf(f, "%02x", req[i]);
  fprintf(f, " cap=%llu busy=%d\n", (unsigned long long)cap, now_busy);
  fclose(f);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Builds the reply into a malloc'd buffer; returns its length.
static size_t make_reply(uint8_t **out) {
  const char *mode = getenv("NSM_SHIM_MODE");
  const char *hex = getenv("NSM_SHIM_REPLY");
  if (mode && strcmp(mode, "big") == 0) {
    uint8_t *b = malloc(BIG_REPLY);
    for (size_t i = 0; i < BIG_REPLY; i++) b[i] = (uint8_t)(i * 7 + 1);
    *out = b;
    return BIG_REPLY;
  }
  if (hex) {
    size_t n = strlen(hex) / 2;
    uint8_t *b = malloc(n ? n : 1);
    for (size_t i = 0; i < n; i++) b[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
    *out = b;
    return n;
  }
  // {"GetRandom": {"random": h'00..ff'}}
  static const uint8_t prefix[] = {0xa1, 0x69, 'G', 'e', 't', 'R', 'a', 'n', 'd', 'o', 'm', 0xa1, 0x66,
                                   'r',  'a',  'n', 'd', 'o', 'm', 0x59, 0x01, 0x00};
  uint8_t *b = malloc(sizeof prefix + 256);
  memcpy(b, prefix, sizeof prefix);
  for (int i = 0; i < 256; i++) b[sizeof prefix + i] = (uint8_t)i;
  *out = b;
  return sizeof prefix + 256;
}

int ioctl(int fd, unsigned long request, ...) {
  static int (*real)(int, unsigned long, ...);
  va_list ap;
  va_start(ap, request);
  void *arg = va_arg(ap, void *);
  va_end(ap);
  if (fd < 0 || fd != nsm_fd) {
    if (!real) real = dlsym(RTLD_NEXT, "ioctl");
    return real(fd, request, arg);
  }
  if (request != NSM_IOCTL_RAW) {
    errno = EINVAL;
    return -1;
  }
  struct nsm_raw *raw = arg;
  if (!raw || !raw->request.addr || !raw->response.addr) {
    errno = EFAULT;
    return -1;
  }
  const char *mode = getenv("NSM_SHIM_MODE");
  int now_busy = __atomic_add_fetch(&busy, 1, __ATOMIC_SEQ_CST);
  const char *delay = getenv("NSM_SHIM_DELAY_MS");
  if (delay) usleep((useconds_t)atoi(delay) * 1000);
  record((const uint8_t *)(uintptr_t)raw->request.addr, raw->request.len > REQ_MAX ? 0 : raw->request.len,
         raw->response.len, now_busy);
  __atomic_sub_fetch(&busy, 1, __ATOMIC_SEQ_CST);
  if (raw->request.len > REQ_MAX) {
    errno = EMSGSIZE;
    return -1;
  }
  if (mode && strncmp(mode, "errno:", 6) == 0) {
    errno = atoi(mode + 6);
    return -1;
  }
  uint8_t *reply;
  size_t n = make_reply(&reply);
  uint64_t cap = raw->response.len;
  size_t copy = n < cap ? n : (size_t)cap;
  memcpy((void *)(uintptr_t)raw->response.addr, reply, copy);
  free(reply);
  raw->response.len = (mode && strcmp(mode, "overlong") == 0) ? cap + 100 : copy;
  return 0;
}
