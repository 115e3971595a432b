/*
 * Batched UDP for the DNS server (issue 18): recvmmsg/sendmmsg on a non-blocking socket, and a
 * libuv poll watcher that calls JavaScript when the socket is readable. Node's dgram costs one
 * recvmsg, one JS callback and one sendmsg (plus a lookup and a request object) per packet; under
 * load this reads up to 64 queries and sends their answers with two system calls and one JS call.
 *
 * Thin wrappers again: the loop, the address formatting and the policy live in
 * src/kernel/udp-batch.ts. Every call returns its result or -errno.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "udp_batch.h"

#define BATCH_MAX 64
#define ADDR_SLOT 28 /* sizeof(struct sockaddr_in6): one source address per packet slot */

static napi_value int_value(napi_env env, long ret, int err) {
  napi_value out;
  napi_create_int64(env, ret < 0 ? -(int64_t)err : ret, &out);
  return out;
}

static bool args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = want;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < want) {
    napi_throw_type_error(env, NULL, "missing argument");
    return false;
  }
  return true;
}

static bool buffer(napi_env env, napi_value v, char **data, size_t *len) {
  if (napi_get_buffer_info(env, v, (void **)data, len) == napi_ok) return true;
  napi_throw_type_error(env, NULL, "expected a Buffer");
  return false;
}

static bool i32(napi_env env, napi_value v, int32_t *out) {
  if (napi_get_value_int32(env, v, out) == napi_ok) return true;
  napi_throw_type_error(env, NULL, "expected an integer");
  return false;
}

/*
 * recvmmsg(fd, packets, slotSize, addrs, lengths): up to BATCH_MAX datagrams, packet i into
 * packets[i*slotSize..], its source address into addrs[i*28..], its length into the int32 at
 * lengths[i*4] (-1 when it did not fit the slot). Never blocks; returns the count or -errno.
 */
static napi_value RecvBatch(napi_env env, napi_callback_info info) {
  napi_value a[5];
  int32_t fd, slot;
  char *pkts, *addrs, *lens;
  size_t pkts_len, addrs_len, lens_len;
  if (!args(env, info, 5, a) || !i32(env, a[0], &fd) || !buffer(env, a[1], &pkts, &pkts_len) || !i32(env, a[2], &slot) ||
      !buffer(env, a[3], &addrs, &addrs_len) || !buffer(env, a[4], &lens, &lens_len))
    return NULL;
  if (slot <= 0) return int_value(env, -1, EINVAL);
  size_t n = pkts_len / (size_t)slot;
  if (addrs_len / ADDR_SLOT < n) n = addrs_len / ADDR_SLOT;
  if (lens_len / 4 < n) n = lens_len / 4;
  if (n > BATCH_MAX) n = BATCH_MAX;
  struct mmsghdr msgs[BATCH_MAX];
  struct iovec iov[BATCH_MAX];
  memset(msgs, 0, sizeof(struct mmsghdr) * n);
  for (size_t i = 0; i < n; i++) {
    iov[i].iov_base = pkts + i * (size_t)slot;
    iov[i].iov_len = (size_t)slot;
    msgs[i].msg_hdr.msg_name = addrs + i * ADDR_SLOT;
    msgs[i].msg_hdr.msg_namelen = ADDR_SLOT;
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int ret = recvmmsg(fd, msgs, (unsigned)n, MSG_DONTWAIT, NULL);
  int err = errno;
  for (int i = 0; i < ret; i++) {
    int32_t len = (msgs[i].msg_hdr.msg_flags & MSG_TRUNC) ? -1 : (int32_t)msgs[i].msg_len;
    memcpy(lens + (size_t)i * 4, &len, 4);
  }
  return int_value(env, ret, err);
}

/*
 * sendmmsg(fd, arena, meta, addrs, count): message i is arena[off..off+len] to the address in
 * addrs slot `slot`, where (off, len, slot) are the int32s at meta[i*12..]. Never blocks; what the
 * socket buffer cannot take is dropped (UDP). Returns the count sent or -errno.
 */
static napi_value SendBatch(napi_env env, napi_callback_info info) {
  napi_value a[5];
  int32_t fd, count;
  char *arena, *meta, *addrs;
  size_t arena_len, meta_len, addrs_len;
  if (!args(env, info, 5, a) || !i32(env, a[0], &fd) || !buffer(env, a[1], &arena, &arena_len) || !buffer(env, a[2], &meta, &meta_len) ||
      !buffer(env, a[3], &addrs, &addrs_len) || !i32(env, a[4], &count))
    return NULL;
  if (count < 0 || count > BATCH_MAX || (size_t)count * 12 > meta_len) return int_value(env, -1, EINVAL);
  struct mmsghdr msgs[BATCH_MAX];
  struct iovec iov[BATCH_MAX];
  memset(msgs, 0, sizeof(struct mmsghdr) * (size_t)count);
  for (int i = 0; i < count; i++) {
    int32_t m[3];
    memcpy(m, meta + (size_t)i * 12, 12);
    if (m[0] < 0 || m[1] < 0 || (size_t)m[0] + (size_t)m[1] > arena_len || m[2] < 0 || ((size_t)m[2] + 1) * ADDR_SLOT > addrs_len)
      return int_value(env, -1, EINVAL);
    char *addr = addrs + (size_t)m[2] * ADDR_SLOT;
    sa_family_t family;
    memcpy(&family, addr, sizeof family);
    iov[i].iov_base = arena + m[0];
    iov[i].iov_len = (size_t)m[1];
    msgs[i].msg_hdr.msg_name = addr;
    msgs[i].msg_hdr.msg_namelen = family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  int sent = 0;
  while (sent < count) {
    int ret = sendmmsg(fd, msgs + sent, (unsigned)(count - sent), MSG_DONTWAIT);
    if (ret < 0) {
      if (sent > 0 || errno == EAGAIN) break;
      return int_value(env, -1, errno);
    }
    if (ret == 0) break;
    sent += ret;
  }
  return int_value(env, sent, 0);
}

/*
 * A readable-watcher on an fd: pollReadable(fd, callback) returns a handle; callback() runs on
 * every loop turn the fd is readable (level-triggered) until pollClose(handle). When the
 * environment (a worker thread) goes away first, the watcher is closed and so is the fd: a
 * worker that dies must neither leave a live handle on its loop nor an open socket in a
 * SO_REUSEPORT group, where the kernel would go on handing it a share of the clients.
 */
struct watcher {
  uv_poll_t poll;
  int fd;
  napi_env env;
  napi_ref callback;
  napi_async_cleanup_hook_handle hook;
  bool closing;
};

static void on_readable(uv_poll_t *poll, int status, int events) {
  (void)status;
  (void)events;
  struct watcher *w = poll->data;
  if (w->closing) return;
  napi_handle_scope scope;
  if (napi_open_handle_scope(w->env, &scope) != napi_ok) return;
  napi_value cb, global, ignored;
  if (napi_get_reference_value(w->env, w->callback, &cb) == napi_ok && cb != NULL && napi_get_global(w->env, &global) == napi_ok) {
    /* make_callback drains microtasks afterwards, like any callback from libuv into Node. */
    if (napi_make_callback(w->env, NULL, global, cb, 0, NULL, &ignored) == napi_pending_exception) {
      napi_value err;
      if (napi_get_and_clear_last_exception(w->env, &err) == napi_ok) napi_fatal_exception(w->env, err);
    }
  }
  napi_close_handle_scope(w->env, scope);
}

static void on_closed(uv_handle_t *handle) {
  struct watcher *w = handle->data;
  if (w->callback != NULL) napi_delete_reference(w->env, w->callback);
  free(w);
}

static void on_closed_at_teardown(uv_handle_t *handle) {
  struct watcher *w = handle->data;
  napi_remove_async_cleanup_hook(w->hook);
  free(w); /* the reference dies with the environment */
}

static void at_teardown(napi_async_cleanup_hook_handle hook, void *arg) {
  struct watcher *w = arg;
  (void)hook;
  w->closing = true;
  uv_poll_stop(&w->poll);
  close(w->fd);
  uv_close((uv_handle_t *)&w->poll, on_closed_at_teardown);
}

static napi_value PollReadable(napi_env env, napi_callback_info info) {
  napi_value a[2], out;
  int32_t fd;
  if (!args(env, info, 2, a) || !i32(env, a[0], &fd)) return NULL;
  uv_loop_t *loop;
  if (napi_get_uv_event_loop(env, &loop) != napi_ok) return NULL;
  struct watcher *w = calloc(1, sizeof *w);
  if (w == NULL) return int_value(env, -1, ENOMEM);
  w->env = env;
  w->fd = fd;
  w->poll.data = w;
  int ret = uv_poll_init(loop, &w->poll, fd);
  if (ret < 0) {
    free(w);
    return int_value(env, -1, -ret);
  }
  if (napi_create_reference(env, a[1], 1, &w->callback) != napi_ok || napi_add_async_cleanup_hook(env, at_teardown, w, &w->hook) != napi_ok) {
    uv_close((uv_handle_t *)&w->poll, on_closed);
    return NULL;
  }
  uv_poll_start(&w->poll, UV_READABLE, on_readable);
  napi_create_external(env, w, NULL, NULL, &out);
  return out;
}

static napi_value PollClose(napi_env env, napi_callback_info info) {
  napi_value a[1];
  struct watcher *w;
  if (!args(env, info, 1, a) || napi_get_value_external(env, a[0], (void **)&w) != napi_ok) return NULL;
  if (!w->closing) {
    w->closing = true;
    uv_poll_stop(&w->poll);
    napi_remove_async_cleanup_hook(w->hook);
    uv_close((uv_handle_t *)&w->poll, on_closed);
  }
  return NULL;
}

bool udp_batch_register(napi_env env, napi_value exports) {
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {{"recvBatch", RecvBatch}, {"sendBatch", SendBatch}, {"pollReadable", PollReadable}, {"pollClose", PollClose}};
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, functions[i].name, fn) != napi_ok)
      return false;
  }
  return true;
}
