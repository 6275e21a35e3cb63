// The per-thread poller (see common.h). One epoll fd per thread watches every pump's sockets and every
// pending vsock connect, and one uv_poll_t on it wakes that thread's loop. With a uv_poll_t per socket,
// each pump paid 10 syscalls before its first byte (uv_poll_init probes the fd with epoll_ctl ADD+DEL
// and sets FIONBIO; uv_poll_start first DELs it), and 2 more to stop; here it is one epoll_ctl to
// register each fd and one to drop it. Each event carries its poll_watch pointer.
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <unistd.h>

struct poller {
  int fd;
  uv_poll_t handle;
  int holds;  // running pumps and pending connects: the handle keeps the loop alive only while there are some
};
static __thread poller *thread_poller;

static void poller_closed(uv_handle_t *h) {
  poller *pl = h->data;
  close(pl->fd);
  free(pl);
}

// The environment goes away: its pumps and connects were finished by their own hooks, which run
// before this one. No close callback: it could run after a worker's copy of the addon is unloaded.
// uv_close already drops the fd from the loop's epoll, so the fd can go now; the few bytes of the
// handle are left to libuv (once per thread exit).
static void poller_cleanup(void *arg) {
  poller *pl = arg;
  if (thread_poller == pl) thread_poller = NULL;
  uv_close((uv_handle_t *)&pl->handle, NULL);
  close(pl->fd);
}

static void poller_cb(uv_poll_t *h, int status, int events) {
  (void)status;
  (void)events;
  poller *pl = h->data;
  struct epoll_event ev[64];
  int n;
  do n = epoll_wait(pl->fd, ev, 64, 0);
  while (n < 0 && errno == EINTR);
  for (int k = 0; k < n; k++) {
    poll_watch *w = ev[k].data.ptr;
    w->cb(w, ev[k].events);
  }
}

poller *poller_get(napi_env env, int *err) {
  if (thread_poller) return thread_poller;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) {
    *err = EINVAL;
    return NULL;
  }
  poller *pl = calloc(1, sizeof *pl);
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
  // Registered before any user's hook, so it runs after them (hooks run in reverse order).
  napi_add_env_cleanup_hook(env, poller_cleanup, pl);
  thread_poller = pl;
  return pl;
}

int poller_set(poller *pl, poll_watch *w, uint32_t events) {
  if (events == w->events) return 0;
  struct epoll_event e = {.events = events, .data.ptr = w};
  int op = !events ? EPOLL_CTL_DEL : w->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD;
  if (epoll_ctl(pl->fd, op, w->fd, &e) < 0) return errno;
  w->events = events;
  return 0;
}

void poller_hold(poller *pl) {
  if (pl->holds++ == 0) uv_ref((uv_handle_t *)&pl->handle);
}

void poller_release(poller *pl) {
  if (--pl->holds == 0) uv_unref((uv_handle_t *)&pl->handle);
}
