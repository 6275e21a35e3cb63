// Shared by every unit of the addon: argument checks, errno errors, the promise-on-the-thread-pool
// shape (async_op) and the per-thread epoll poller that the splice pump and vsock connect wait on.
//
// Plain C against node_api.h (N-API 8) so one build loads in Node 20, 24 and 26.
#ifndef CLOISTER_COMMON_H
#define CLOISTER_COMMON_H

#define _GNU_SOURCE
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <node_api.h>
#include <uv.h>

#include <sys/socket.h>

// Bumped whenever a function is added, removed or changes its arguments or result. src/native.ts
// refuses an addon built from other sources (a stale native/build, a $CLOISTER_NATIVE left over) once,
// at load, with one clear message, instead of checking for each function where it is used.
#define CLOISTER_NATIVE_ABI 6

// ---------------------------------------------------------------------------------------------
// errors: Error objects with `code` = errno name (ECONNREFUSED, EMSGSIZE...), `errno` and `syscall`

napi_value make_errno_error(napi_env env, const char *syscall, int err);
napi_value throw_errno(napi_env env, const char *syscall, int err);

#define NAPI_CALL(env, call)                                                                          \
  do {                                                                                                \
    if ((call) != napi_ok) {                                                                          \
      const napi_extended_error_info *info_;                                                          \
      napi_get_last_error_info((env), &info_);                                                        \
      bool pending_;                                                                                  \
      napi_is_exception_pending((env), &pending_);                                                    \
      if (!pending_)                                                                                  \
        napi_throw_error((env), NULL,                                                                 \
                         info_ && info_->error_message ? info_->error_message : "N-API call failed"); \
      return NULL;                                                                                    \
    }                                                                                                 \
  } while (0)

// ---------------------------------------------------------------------------------------------
// arguments: each check throws a TypeError/RangeError naming the argument and returns false

bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv);
bool arg_u32(napi_env env, napi_value v, const char *what, uint32_t *out);  // cid, port
bool arg_i32(napi_env env, napi_value v, const char *what, int32_t *out);   // fd, backlog, pid, timeout
bool arg_u8(napi_env env, napi_value v, const char *what, void **data, size_t *length);  // Uint8Array
bool arg_function(napi_env env, napi_value v, const char *what);
napi_value undefined(napi_env env);

// ---------------------------------------------------------------------------------------------
// async work: one shape for every call that must block (the NSM ioctl). exec() runs on the thread
// pool and fills `err` (errno) or the unit's own fields; result() settles the promise on the loop thread.

typedef struct async_op async_op;
struct async_op {
  napi_async_work work;
  napi_deferred deferred;
  void (*exec)(async_op *op);
  napi_value (*result)(napi_env env, async_op *op);
  void (*release)(async_op *op);  // frees the unit's fields (may be NULL)
  const char *syscall;
  int err;
};

// Queues `op` (allocated by the caller, freed here with op->release) and returns its promise.
napi_value queue_op(napi_env env, async_op *op, const char *name);

// ---------------------------------------------------------------------------------------------
// the poller: one epoll fd per thread, watched by one uv_poll_t on that thread's loop. A watcher's
// callback runs on the loop thread for each batch of events on its fd.
//
// Memory rule for users: after poller_unwatch, events already fetched in the current batch may still
// be delivered, so a watcher's memory must live until a later loop phase (each user frees it in a
// uv_close callback) and its callback must ignore events once its owner has finished.

typedef struct poll_watch poll_watch;
struct poll_watch {
  void (*cb)(poll_watch *w, uint32_t events);
  void *owner;
  int fd;
  uint32_t events;  // what is registered (0: not registered)
};

typedef struct poller poller;

// This thread's poller (created on first use). NULL with *err set when it cannot be made.
poller *poller_get(napi_env env, int *err);
// Registers, changes or (events == 0) drops w->fd's interest. Returns 0 or an errno.
int poller_set(poller *pl, poll_watch *w, uint32_t events);
// The poller keeps the loop alive while anything holds it (a running pump, a pending connect).
void poller_hold(poller *pl);
void poller_release(poller *pl);

// Connects the non-blocking socket fd (owned from here: closed on failure) to sa on the poller; the
// promise resolves with fd once connected, ETIMEDOUT after timeout ms (< 0: none). `probe`: check once
// with poll() whether it completed inside connect() (loopback TCP does) before waiting. fdwait.c.
napi_value connect_fd(napi_env env, int fd, const struct sockaddr *sa, socklen_t salen, int32_t timeout,
                      bool probe);

// ---------------------------------------------------------------------------------------------
// units: each adds its functions to the exports

bool define_functions(napi_env env, napi_value exports, const napi_property_descriptor *props, size_t n);
bool init_vsock(napi_env env, napi_value exports);
bool init_nsm(napi_env env, napi_value exports);
bool init_system(napi_env env, napi_value exports);
bool init_splice(napi_env env, napi_value exports);
bool init_netfilter(napi_env env, napi_value exports);
bool init_fdwait(napi_env env, napi_value exports);

#define FUNCTION(name, fn) {name, NULL, fn, NULL, NULL, NULL, napi_enumerable, NULL}

#endif
