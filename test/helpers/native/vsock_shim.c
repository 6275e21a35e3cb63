// Test-only LD_PRELOAD shim standing in for a vsock peer (this machine has no vsock loopback).
// Intercepts connect() on AF_VSOCK sockets only; the real vsock connect is never made, so nothing
// leaves the machine whatever the CID. Every other family goes to libc's connect.
//   port == $VSOCK_SHIM_UNIX_PORT: the fd becomes a Unix stream socket connected to $VSOCK_SHIM_UNIX
//     (a listener the test runs), and connect() reports EINPROGRESS: a vsock connect that completes
//     a moment later, through the same wait-for-writable path a real one takes.
//   any other port: a host that never accepts. The fd becomes the read end of a pipe whose write end
//     is kept open, so it never turns writable and never reports an error, and connect() reports
//     EINPROGRESS: the connect stays in progress until the caller gives up.
//   $VSOCK_SHIM_STALL_FIRST=N: the first N connects to $VSOCK_SHIM_UNIX_PORT stall as above (a relay
//     that stopped accepting), the later ones complete to $VSOCK_SHIM_UNIX.
//   $VSOCK_SHIM_RECORD: a file that gets one line "stalled <port>" per connect left in progress.
// Also bind(), with $VSOCK_SHIM_BIND_DIR set: an AF_VSOCK bind to port P becomes a Unix stream socket
// bound at $VSOCK_SHIM_BIND_DIR/P.sock (the caller's listen() and accept() work on it unchanged), so a
// supervisor's vsock listeners are reachable by a test and never clash with this machine's vsock ports.
// VMADDR_PORT_ANY binds stay real vsock binds (an ephemeral port clashes with nothing).
// Build: cc -shared -fPIC -o vsock_shim.so vsock_shim.c -ldl
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
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
  const char *stall_first = getenv("VSOCK_SHIM_STALL_FIRST");
  static unsigned long unix_connects;
  int to_unix = unix_path && unix_port && vm->svm_port == (unsigned)atoi(unix_port);
  if (to_unix && stall_first && __atomic_fetch_add(&unix_connects, 1, __ATOMIC_SEQ_CST) < strtoul(stall_first, NULL, 10))
    to_unix = 0;
  if (to_unix) {
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
    const char *record = getenv("VSOCK_SHIM_RECORD");
    if (record) {
      FILE *f = fopen(record, "a");
      if (f) {
        fprintf(f, "stalled %u\n", vm->svm_port);
        fclose(f);
      }
    }
  }
  errno = EINPROGRESS;
  return -1;
}

int bind(int fd, const struct sockaddr *addr, socklen_t len) {
  static int (*real_bind)(int, const struct sockaddr *, socklen_t);
  if (!real_bind) real_bind = dlsym(RTLD_NEXT, "bind");
  const char *dir = getenv("VSOCK_SHIM_BIND_DIR");
  if (!dir || !addr || addr->sa_family != AF_VSOCK || len < sizeof(struct sockaddr_vm)) return real_bind(fd, addr, len);
  const struct sockaddr_vm *vm = (const struct sockaddr_vm *)addr;
  if (vm->svm_port == VMADDR_PORT_ANY) return real_bind(fd, addr, len);
  struct sockaddr_un sun = {.sun_family = AF_UNIX};
  if (snprintf(sun.sun_path, sizeof sun.sun_path, "%s/%u.sock", dir, vm->svm_port) >= (int)sizeof sun.sun_path) {
    errno = ENAMETOOLONG;
    return -1;
  }
  unlink(sun.sun_path);
  int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (u < 0 || real_bind(u, (struct sockaddr *)&sun, sizeof sun) < 0 || replace_fd(fd, u) < 0) {
    int e = errno;
    if (u >= 0) close(u);
    errno = e;
    return -1;
  }
  return 0;
}
