// Transparent egress (docs/transparent-egress.md): the three kernel interfaces it needs and Node lacks,
// kept byte-level so the layouts live in one TypeScript file (src/system/netfilter.ts, src/system/route.ts):
//
//   originalDestination(fd)      getsockopt(SOL_IP, SO_ORIGINAL_DST): where a REDIRECTed connection was going
//   iptablesGet(table, size)     IPT_SO_GET_INFO (size 0) or IPT_SO_GET_ENTRIES (size = the table's size)
//   iptablesReplace(blob)        IPT_SO_SET_REPLACE with a complete struct ipt_replace built in TypeScript
//   rtnetlinkRequest(message)    one rtnetlink request (RTM_NEWROUTE / RTM_DELROUTE) and its acknowledgement
//
// No iptables or ip binary is needed in the app's image (the Nitro kernel has legacy iptables only).
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv4/ip_tables.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

// originalDestination(fd) -> { address, port } of a connection the nat table redirected (IPv4 only:
// transparent mode refuses IPv6, docs/transparent-egress.md). ENOENT: no conntrack entry for it.
static napi_value OriginalDestination(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  int32_t fd;
  if (!arg_i32(env, argv[0], "fd", &fd)) return NULL;
  struct sockaddr_in sin;
  socklen_t len = sizeof sin;
  memset(&sin, 0, sizeof sin);
  if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &sin, &len) < 0) return throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", errno);
  if (sin.sin_family != AF_INET) return throw_errno(env, "getsockopt(SO_ORIGINAL_DST)", EAFNOSUPPORT);
  char text[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &sin.sin_addr, text, sizeof text);
  napi_value o, a, p;
  NAPI_CALL(env, napi_create_object(env, &o));
  NAPI_CALL(env, napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &a));
  NAPI_CALL(env, napi_create_uint32(env, ntohs(sin.sin_port), &p));
  NAPI_CALL(env, napi_set_named_property(env, o, "address", a));
  NAPI_CALL(env, napi_set_named_property(env, o, "port", p));
  return o;
}

// A raw socket is what iptables itself uses for these options (CAP_NET_RAW to open, CAP_NET_ADMIN to set).
static int raw_socket(void) { return socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW); }

static bool arg_table(napi_env env, napi_value v, char name[XT_TABLE_MAXNAMELEN]) {
  size_t len;
  memset(name, 0, XT_TABLE_MAXNAMELEN);
  if (napi_get_value_string_utf8(env, v, name, XT_TABLE_MAXNAMELEN, &len) != napi_ok || len == 0 ||
      len >= XT_TABLE_MAXNAMELEN - 1) {
    napi_throw_type_error(env, "ERR_INVALID_ARG_TYPE", "table must be a short non-empty string");
    return false;
  }
  return true;
}

// iptablesGet(table, size): size 0 -> the raw struct ipt_getinfo; else the raw struct ipt_get_entries
// (its header and `size` bytes of entries). Asking for the nat table loads iptable_nat where it is a module.
static napi_value IptablesGet(napi_env env, napi_callback_info info) {
  napi_value argv[2];
  if (!get_args(env, info, 2, argv)) return NULL;
  char name[XT_TABLE_MAXNAMELEN];
  if (!arg_table(env, argv[0], name)) return NULL;
  uint32_t size;
  if (!arg_u32(env, argv[1], "size", &size)) return NULL;
  if (size > (64u << 20)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "size must be at most 64 MiB");
    return NULL;
  }
  int s = raw_socket();
  if (s < 0) return throw_errno(env, "socket(AF_INET, SOCK_RAW)", errno);
  socklen_t len;
  void *buf;
  int opt;
  if (size == 0) {
    len = sizeof(struct ipt_getinfo);
    opt = IPT_SO_GET_INFO;
  } else {
    len = sizeof(struct ipt_get_entries) + size;
    opt = IPT_SO_GET_ENTRIES;
  }
  buf = calloc(1, len);
  if (!buf) {
    close(s);
    return throw_errno(env, "calloc", ENOMEM);
  }
  memcpy(buf, name, XT_TABLE_MAXNAMELEN);  // both structs start with the table name
  if (size != 0) ((struct ipt_get_entries *)buf)->size = size;
  if (getsockopt(s, SOL_IP, opt, buf, &len) < 0) {
    int e = errno;
    free(buf);
    close(s);
    return throw_errno(env, size == 0 ? "getsockopt(IPT_SO_GET_INFO)" : "getsockopt(IPT_SO_GET_ENTRIES)", e);
  }
  close(s);
  napi_value out;
  void *data;
  if (napi_create_buffer_copy(env, len, buf, &data, &out) != napi_ok) {
    free(buf);
    napi_throw_error(env, NULL, "iptablesGet: could not build the result");
    return NULL;
  }
  free(buf);
  return out;
}

// iptablesReplace(blob): blob is a complete struct ipt_replace (header + entries) except its `counters`
// pointer, which is filled in here (the kernel writes the old table's counters there: num_counters * 16 bytes).
static napi_value IptablesReplace(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  void *data;
  size_t length;
  if (!arg_u8(env, argv[0], "blob", &data, &length)) return NULL;
  if (length < sizeof(struct ipt_replace) || length > (64u << 20)) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "blob must hold a struct ipt_replace and at most 64 MiB");
    return NULL;
  }
  struct ipt_replace *repl = malloc(length);
  if (!repl) return throw_errno(env, "malloc", ENOMEM);
  memcpy(repl, data, length);
  if (repl->size != length - sizeof(struct ipt_replace) || repl->num_counters > (1u << 20)) {
    free(repl);
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "blob: size or num_counters is inconsistent");
    return NULL;
  }
  struct xt_counters *counters = calloc(repl->num_counters ? repl->num_counters : 1, sizeof *counters);
  if (!counters) {
    free(repl);
    return throw_errno(env, "calloc", ENOMEM);
  }
  repl->counters = counters;
  int s = raw_socket();
  int e = 0;
  if (s < 0)
    e = errno;
  else if (setsockopt(s, SOL_IP, IPT_SO_SET_REPLACE, repl, (socklen_t)length) < 0)
    e = errno;
  if (s >= 0) close(s);
  free(counters);
  free(repl);
  if (e) return throw_errno(env, s < 0 ? "socket(AF_INET, SOCK_RAW)" : "setsockopt(IPT_SO_SET_REPLACE)", e);
  return undefined(env);
}

// rtnetlinkRequest(message): sends one complete rtnetlink message (built with NLM_F_ACK) and waits for
// the kernel's acknowledgement; a non-zero error in it is thrown as that errno.
static napi_value RtnetlinkRequest(napi_env env, napi_callback_info info) {
  napi_value argv[1];
  if (!get_args(env, info, 1, argv)) return NULL;
  void *data;
  size_t length;
  if (!arg_u8(env, argv[0], "message", &data, &length)) return NULL;
  if (length < sizeof(struct nlmsghdr) || length > 4096) {
    napi_throw_range_error(env, "ERR_OUT_OF_RANGE", "message must be an rtnetlink message of at most 4096 bytes");
    return NULL;
  }
  int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
  if (s < 0) return throw_errno(env, "socket(AF_NETLINK)", errno);
  struct sockaddr_nl kernel = {.nl_family = AF_NETLINK};
  if (sendto(s, data, length, 0, (struct sockaddr *)&kernel, sizeof kernel) < 0) {
    int e = errno;
    close(s);
    return throw_errno(env, "sendto(NETLINK_ROUTE)", e);
  }
  uint32_t seq = ((const struct nlmsghdr *)data)->nlmsg_seq;
  char buf[8192];
  for (;;) {
    ssize_t n = recv(s, buf, sizeof buf, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(s);
      return throw_errno(env, "recv(NETLINK_ROUTE)", e);
    }
    for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, (size_t)n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_seq != seq || h->nlmsg_type != NLMSG_ERROR) continue;
      int err = -((struct nlmsgerr *)NLMSG_DATA(h))->error;
      close(s);
      if (err) return throw_errno(env, "rtnetlink", err);
      return undefined(env);
    }
  }
}

bool init_netfilter(napi_env env, napi_value exports) {
  const napi_property_descriptor props[] = {
      FUNCTION("originalDestination", OriginalDestination),
      FUNCTION("iptablesGet", IptablesGet),
      FUNCTION("iptablesReplace", IptablesReplace),
      FUNCTION("rtnetlinkRequest", RtnetlinkRequest),
  };
  return define_functions(env, exports, props, sizeof props / sizeof props[0]);
}
