// System calls Node does not offer: closeFd, makePipe (one pipe for the app's stdout and stderr),
// bringUpLoopback, seedEntropy, setChildSubreaper, reapZombie, mountTmpfs and unmount (the RAM
// directory, src/system/ram-dir.ts), bindMount (transparent egress's resolv.conf). All quick and synchronous.
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <linux/random.h>

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

// Reads a JS string argument into a malloc'd, NUL-terminated buffer (freed by the caller). Refuses
// an embedded NUL: the kernel would silently cut the path or option string there.
static char *arg_string(napi_env env, napi_value v, const char *what) {
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) {
    char msg[96];
    snprintf(msg, sizeof msg, "%s must be a string", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", msg);
    return NULL;
  }
  char *buf = malloc(len + 1);
  if (!buf) {
    throw_errno(env, "malloc", ENOMEM);
    return NULL;
  }
  napi_get_value_string_utf8(env, v, buf, len + 1, &len);
  if (strlen(buf) != len) {
    free(buf);
    char msg[96];
    snprintf(msg, sizeof msg, "%s must not contain a NUL character", what);
    napi_throw_type_error(env, "ERR_INVALID_ARG_VALUE", msg);
    return NULL;
  }
  return buf;
}

// Two string arguments (mountTmpfs, bindMount), malloc'd; false (with an exception pending) if either is
// missing or not a string. The caller frees both.
static bool two_strings(napi_env env, napi_callback_info info, const char *what1, char **s1, const char *what2,
                        char **s2) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return false;
  *s1 = arg_string(env, argv[0], what1);
  if (!*s1) return false;
  *s2 = arg_string(env, argv[1], what2);
  if (!*s2) {
    free(*s1);
    return false;
  }
  return true;
}

// mountTmpfs(target, options): mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
// options), e.g. "size=16m,mode=0711,noswap". Needs CAP_SYS_ADMIN (root in the enclave, or a test in
// its own mount namespace); the caller decides when to try.
static napi_value MountTmpfs(napi_env env, napi_callback_info info) {
  char *target, *options;
  if (!two_strings(env, info, "target", &target, "options", &options)) return NULL;
  int r = mount("tmpfs", target, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, options);
  int e = errno;
  free(target);
  free(options);
  if (r < 0) return throw_errno(env, "mount", e);
  return undefined(env);
}

// unmount(target): umount2(target, MNT_DETACH): gone from the namespace at once, freed when the last
// open file on it closes.
static napi_value Unmount(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  char *target = arg_string(env, argv[0], "target");
  if (!target) return NULL;
  int r = umount2(target, MNT_DETACH);
  int e = errno;
  free(target);
  if (r < 0) return throw_errno(env, "umount2", e);
  return undefined(env);
}

// bindMount(source, target): mount(source, target, NULL, MS_BIND): a file of cloister's over one of the
// image's (transparent egress's resolv.conf when the image's is read-only). unmount() undoes it.
static napi_value BindMount(napi_env env, napi_callback_info info) {
  char *source, *target;
  if (!two_strings(env, info, "source", &source, "target", &target)) return NULL;
  int r = mount(source, target, NULL, MS_BIND, NULL);
  int e = errno;
  free(source);
  free(target);
  if (r < 0) return throw_errno(env, "mount(MS_BIND)", e);
  return undefined(env);
}

bool init_system(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      FUNCTION("closeFd", CloseFd),
      FUNCTION("makePipe", MakePipe),
      FUNCTION("bringUpLoopback", BringUpLoopback),
      FUNCTION("seedEntropy", SeedEntropy),
      FUNCTION("setChildSubreaper", SetChildSubreaper),
      FUNCTION("reapZombie", ReapZombie),
      FUNCTION("mountTmpfs", MountTmpfs),
      FUNCTION("unmount", Unmount),
      FUNCTION("bindMount", BindMount),
  };
  return define_functions(env, exports, props, sizeof props / sizeof props[0]);
}
