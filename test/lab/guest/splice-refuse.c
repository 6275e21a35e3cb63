// LD_PRELOAD shim for the lab: splice() from an AF_VSOCK socket fails with EINVAL, as it does on Linux
// 4.14 (the Nitro Enclaves kernel: net/socket.c sock_splice_read returns -EINVAL when the protocol has no
// splice_read, and AF_VSOCK had none). Each refusal appends one byte to $LAB_SPLICE_REFUSALS, so the
// scenario can prove the refusal happened and the tunnel still carried every byte.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif

ssize_t splice(int fd_in, loff_t *off_in, int fd_out, loff_t *off_out, size_t len, unsigned int flags) {
  static ssize_t (*real)(int, loff_t *, int, loff_t *, size_t, unsigned int);
  if (!real) real = (ssize_t (*)(int, loff_t *, int, loff_t *, size_t, unsigned int))dlsym(RTLD_NEXT, "splice");
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  if (getsockname(fd_in, (struct sockaddr *)&ss, &sl) == 0 && ss.ss_family == AF_VSOCK) {
    const char *log = getenv("LAB_SPLICE_REFUSALS");
    if (log) {
      int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
      if (fd >= 0) {
        (void)!write(fd, "x", 1);
        close(fd);
      }
    }
    errno = EINVAL;
    return -1;
  }
  return real(fd_in, off_in, fd_out, off_out, len, flags);
}
