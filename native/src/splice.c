// The splice pump: joins two connected stream sockets in the kernel (spliceJoin, spliceCancel,
// spliceIdlePipes). Used by src/transport/tunnel.ts for every egress and ingress tunnel.
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

// splice pump: joins two connected stream sockets in the kernel. Bytes go socket -> pipe -> socket
// with splice(2), never entering user space. Event-driven on the caller's libuv loop (one epoll fd
// per thread for all pumps and connects, see poller.c; no thread per tunnel): each direction reads only when
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
  bool drained;   // the last read was small (request/response traffic): `from` is likely empty
  uint64_t bytes; // bytes written to `to`
  uint64_t greet; // of which a greeting that went through the pipe (not tunnel bytes)
} pump_dir;

typedef struct {
  napi_env env;
  napi_ref callback;
  napi_async_context async_ctx;
  uv_loop_t *loop;
  int fd[2];
  poller *poller;
  poll_watch watch[2];  // fd[i] in the poller; watch[i].events is what is registered (0: not registered)
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

// Gives d a pipe (from the pool, else a new default-size one). Taken on first use: a tunnel that never
// carries bytes one way needs no pipe for that direction. false with errno set when none can be made.
static bool pipe_take(pump_dir *d) {
  int pp[2];
  if (pipe_pool_len > 0) {
    pipe_pair *pooled = &pipe_pool[--pipe_pool_len];
    pp[0] = pooled->r;
    pp[1] = pooled->w;
  } else if (pipe2(pp, O_NONBLOCK | O_CLOEXEC) < 0) {
    return false;
  }
  d->pipe_r = pp[0];
  d->pipe_w = pp[1];
  return true;
}

// Sends a greeting (the proxy's "200", the relay's "Ok", a PROXY header) to fd `to` before anything the
// pump moves: written at once, and whatever the socket does not take goes first into the pipe of the
// direction that writes to `to`, which the pump flushes before it reads more. Not counted as tunnel bytes.
static int pump_greet(pump *p, int to, const uint8_t *data, size_t len) {
  ssize_t n;
  do n = send(p->fd[to], data, len, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  if (n < 0 && errno != EAGAIN) return errno;
  size_t sent = n > 0 ? (size_t)n : 0;
  if (sent == len) return 0;
  pump_dir *d = &p->dir[1 - to];
  if (d->pipe_w < 0 && !pipe_take(d)) return errno;
  n = write(d->pipe_w, data + sent, len - sent);
  if (n < 0) return errno;
  if ((size_t)n != len - sent) return EMSGSIZE;  // more than an empty pipe holds: never a greeting
  d->in_pipe = len - sent;
  d->greet = len - sent;
  return 0;
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
  for (int i = 0; i < 2; i++) {
    pump_dir *d = &p->dir[i];
    napi_create_double(env, (double)(d->bytes > d->greet ? d->bytes - d->greet : 0), &argv[1 + i]);
  }
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
    poller_set(p->poller, &p->watch[i], 0);
    p->watch[i].events = 0;
  }
  poller_release(p->poller);
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
// did, the bytes could not be put back: EIO ends the pump rather than lose them silently.
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
    if (d->pipe_w < 0 && !pipe_take(d)) {
      pump_finish(p, "pipe2", errno);
      return false;
    }
    if (d->drained) {
      // Wait for readable instead of a read that would find nothing (EAGAIN): level-triggered, so bytes
      // that did arrive meanwhile wake the next poll at once. One splice less per burst each way.
      d->drained = false;
      return true;
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
    if (n > 0) {
      // A read that filled the default 64 KiB pipe is a bulk transfer: bigger pipes mean fewer wakeups
      // per MiB. Refused (unprivileged, over the user's pipe quota) is fine.
      if (!d->grown && n >= 65536) {
        d->grown = true;
        fcntl(d->pipe_w, F_SETPIPE_SZ, PUMP_PIPE_SIZE);
      }
      d->in_pipe = (size_t)n;
      // Only small reads of a direction that never carried bulk: a bulk transfer keeps reading until
      // EAGAIN, as before (its next read usually finds more).
      d->drained = !d->grown && n < 16384;
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
    int err = poller_set(p->poller, &p->watch[i], (uint32_t)want[i]);
    if (err) return pump_finish(p, "epoll_ctl", err);
  }
}

// An event on fd i of pump p (as libuv's uv_poll did: an error ends the pump, a hang-up wakes what was
// waited on, and the splice calls then find the EOF or the error).
static void pump_fd_event(poll_watch *w, uint32_t events) {
  pump *p = w->owner;
  int i = w == &p->watch[0] ? 0 : 1;
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
  if (events & EPOLLHUP) events |= w->events;
  // dir[i] reads from fd i and writes to fd 1-i.
  bool run[2];
  run[i] = (events & EPOLLIN) != 0;
  run[1 - i] = (events & EPOLLOUT) != 0;
  pump_step(p, run);
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

// An optional Uint8Array argument: absent (undefined or null) gives len 0.
static bool arg_optional_u8(napi_env env, napi_value v, const char *what, void **data, size_t *len) {
  napi_valuetype t;
  *data = NULL;
  *len = 0;
  if (napi_typeof(env, v, &t) == napi_ok && (t == napi_undefined || t == napi_null)) return true;
  return arg_u8(env, v, what, data, len);
}

// spliceJoin(fdA, fdB, idleMs, callback(err, aToB, bToA), greetA?, greetB?) -> handle for spliceCancel.
// The fds are dup()ed; the caller stops its own reading first and closes its fds when it likes (the
// pump's copies keep the connections open). greetA / greetB are sent to A / B before any tunnel byte.
static napi_value SpliceJoin(napi_env env, napi_callback_info info) {
  napi_value argv[6];
  if (!get_args(env, info, 4, argv)) return NULL;
  size_t argc = 6;
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  napi_value none;
  napi_get_undefined(env, &none);
  for (size_t i = argc; i < 6; i++) argv[i] = none;
  int32_t fa, fb, idle;
  if (!arg_i32(env, argv[0], "fdA", &fa) || !arg_i32(env, argv[1], "fdB", &fb) ||
      !arg_i32(env, argv[2], "idleMs", &idle))
    return NULL;
  if (!arg_function(env, argv[3], "callback")) return NULL;
  void *greet[2];
  size_t greet_len[2];
  if (!arg_optional_u8(env, argv[4], "greetA", &greet[0], &greet_len[0]) ||
      !arg_optional_u8(env, argv[5], "greetB", &greet[1], &greet_len[1]))
    return NULL;
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
    p->poller = poller_get(env, &err);
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
  poller_hold(p->poller);
  for (int i = 0; i < 2; i++) p->watch[i] = (poll_watch){.cb = pump_fd_event, .owner = p, .fd = p->fd[i]};
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
  for (int i = 0; i < 2 && !p->finishing; i++) {
    if (!greet_len[i]) continue;
    int gerr = pump_greet(p, i, greet[i], greet_len[i]);
    if (gerr) pump_finish(p, "send", gerr);
  }
  // Nothing else is tried up front: both fds wait for readable (level-triggered, so bytes already
  // queued in the kernel wake the first poll at once).
  bool run[2] = {false, false};
  if (!p->finishing) pump_step(p, run);
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

// spliceIdlePipes() -> how many pipe pairs this thread's pool holds (at most PIPE_POOL_MAX): lets a
// leak check tell pooled pipes from lost ones.
static napi_value SpliceIdlePipes(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value v;
  napi_create_int32(env, pipe_pool_len, &v);
  return v;
}

bool init_splice(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      FUNCTION("spliceJoin", SpliceJoin),
      FUNCTION("spliceCancel", SpliceCancel),
      FUNCTION("spliceIdlePipes", SpliceIdlePipes),
  };
  return define_functions(env, exports, props, sizeof props / sizeof props[0]);
}
