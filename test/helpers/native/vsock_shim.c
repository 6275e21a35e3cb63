// Test-only LD_PRELOAD shim standing in for a vsock peer (this machine has no vsock loopback).
// Intercepts connect() on AF_VSOCK sockets only; the real vsock connect is never made, so nothing
// leaves the machine whatever the CID. Every other family goes to libc's connect.
//   port == $VSOCK_SHIM_UNIX_PORT: the fd becomes a Unix stream socket connected to $VSOCK_SHIM_UNIX
//     (a listener the test runs), and connect() reports EINPROGRESS: a vsock connect that completes
//     a moment later, through the same wait-for-writable path a real one takes.
//   any other port: a host that never accepts. The fd becomes the read end of a pipe whose write end
//     is kept open, so it never turns writable and never reports an error, and connect() reports
//     EINPROGRESS: the connect stays in progress until the caller gives up.
// Build: cc -shared -fPIC -o vsock_shim.so vsock_shim.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <linux/vm_sockets.h>

static int replace_fd(int fd, int with) {
  // Keep the caller's O_NONBLOCK; dup3 sets close-on-exec as socket(SOCK_CLOEXEC) did.
  int fl = fcntl(fd, F_GETFL);
  if (dup3(with, fd, O_CLOEXEC) < 0) return -1;
  close(with);
  if (fl >= 0) fcntl(fd, F_SETFL, fl);
  return 0;
}

int connect(int fd, const struct sockaddr *addr, socklen_t len) {
  static int (*real_connect)(int, const struct sockaddr *, socklen_t);
  if (!real_connect) real_connect = dlsym(RTLD_NEXT, "connect");
  if (!addr || addr->sa_family != AF_VSOCK || len < sizeof(struct sockaddr_vm)) return real_connect(fd, addr, len);
  const struct sockaddr_vm *vm = (const struct sockaddr_vm *)addr;
  const char *unix_path = getenv("VSOCK_SHIM_UNIX");
  const char *unix_port = getenv("VSOCK_SHIM_UNIX_PORT");
  if (unix_path && unix_port && vm->svm_port == (unsigned)atoi(unix_port)) {
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    strncpy(sun.sun_path, unix_path, sizeof sun.sun_path - 1);
    if (u < 0 || real_connect(u, (struct sockaddr *)&sun, sizeof sun) < 0 || replace_fd(fd, u) < 0) {
      int e = errno;
      if (u >= 0) close(u);
      errno = e;
      return -1;
    }
  } else {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    // p[1] stays open for the life of the process: the read end never sees EOF (no EPOLLHUP).
    if (replace_fd(fd, p[0]) < 0) return -1;
  }
  errno = EINPROGRESS;
  return -1;
}
