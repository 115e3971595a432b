/*
 * shoal-sys: the few system calls Node does not expose (netlink sockets, setns, unshare, mount,
 * the sandbox's exec), as a small N-API addon. Every call returns its result or -errno, taken
 * right after the call, so no later call can overwrite errno before JavaScript reads it.
 *
 * Why not an FFI library: a CNI plugin is a fresh process per ADD, and loading koffi took 3-6 ms
 * of it (its addon is 1.1 MB and registers its whole type system at load); this file loads in
 * ~0.4 ms (measured, DESIGN §6). Kept to thin wrappers: policy lives in src/kernel/.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <node_api.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include "udp_batch.h"

#define MAX_ARGS 5

/* Fails the call with a TypeError naming the argument; the caller returns NULL. */
static bool fail(napi_env env, const char *what) {
  napi_throw_type_error(env, NULL, what);
  return false;
}

static bool get_args(napi_env env, napi_callback_info info, size_t want, napi_value *argv) {
  size_t argc = MAX_ARGS;
  napi_value all[MAX_ARGS];
  if (napi_get_cb_info(env, info, &argc, all, NULL, NULL) != napi_ok) return fail(env, "bad call");
  if (argc < want) return fail(env, "missing argument");
  for (size_t i = 0; i < want; i++) argv[i] = all[i];
  return true;
}

static bool get_i32(napi_env env, napi_value v, int32_t *out) {
  return napi_get_value_int32(env, v, out) == napi_ok || fail(env, "expected an integer");
}

static bool get_buffer(napi_env env, napi_value v, void **data, size_t *len) {
  return napi_get_buffer_info(env, v, data, len) == napi_ok || fail(env, "expected a Buffer");
}

/* A heap copy of a string argument; with nullable, null/undefined give NULL (and true). */
static bool get_string(napi_env env, napi_value v, bool nullable, char **out) {
  napi_valuetype type;
  *out = NULL;
  if (napi_typeof(env, v, &type) != napi_ok) return fail(env, "bad argument");
  if (nullable && (type == napi_null || type == napi_undefined)) return true;
  if (type != napi_string) return fail(env, "expected a string");
  size_t len;
  if (napi_get_value_string_utf8(env, v, NULL, 0, &len) != napi_ok) return fail(env, "bad string");
  *out = malloc(len + 1);
  if (*out == NULL) return fail(env, "out of memory");
  napi_get_value_string_utf8(env, v, *out, len + 1, &len);
  if (strlen(*out) != len) {
    free(*out);
    *out = NULL;
    return fail(env, "string contains a NUL byte");
  }
  return true;
}

/* A NULL-terminated heap copy of an array of strings. */
static bool get_string_array(napi_env env, napi_value v, char ***out) {
  uint32_t n;
  *out = NULL;
  if (napi_get_array_length(env, v, &n) != napi_ok) return fail(env, "expected an array");
  char **list = calloc((size_t)n + 1, sizeof(char *));
  if (list == NULL) return fail(env, "out of memory");
  for (uint32_t i = 0; i < n; i++) {
    napi_value item;
    if (napi_get_element(env, v, i, &item) != napi_ok || !get_string(env, item, false, &list[i])) {
      for (uint32_t j = 0; j < i; j++) free(list[j]);
      free(list);
      return false;
    }
  }
  *out = list;
  return true;
}

static void free_string_array(char **list) {
  if (list == NULL) return;
  for (char **p = list; *p != NULL; p++) free(*p);
  free(list);
}

/* The syscall's result, or -errno when it failed. */
static napi_value result(napi_env env, long ret, int err) {
  napi_value out;
  napi_create_int64(env, ret < 0 ? -(int64_t)err : ret, &out);
  return out;
}

static bool get_ints(napi_env env, napi_callback_info info, size_t n, int32_t *out) {
  napi_value a[MAX_ARGS];
  if (!get_args(env, info, n, a)) return false;
  for (size_t i = 0; i < n; i++)
    if (!get_i32(env, a[i], &out[i])) return false;
  return true;
}

/* A call whose arguments are all integers: `name(a[0], ...)` returning an int. */
#define INT_CALL(Name, n, call)                                     \
  static napi_value Name(napi_env env, napi_callback_info info) {   \
    int32_t a[n];                                                   \
    if (!get_ints(env, info, n, a)) return NULL;                    \
    int ret = (call);                                               \
    return result(env, ret, errno);                                 \
  }

INT_CALL(Socket, 3, socket(a[0], a[1], a[2]))
INT_CALL(Close, 1, close(a[0]))
INT_CALL(Setns, 2, setns(a[0], a[1]))
INT_CALL(Unshare, 1, unshare(a[0]))
INT_CALL(Fcntl, 3, fcntl(a[0], a[1], a[2]))

static napi_value Bind(napi_env env, napi_callback_info info) {
  napi_value a[2];
  int32_t fd;
  void *addr;
  size_t len;
  if (!get_args(env, info, 2, a) || !get_i32(env, a[0], &fd) || !get_buffer(env, a[1], &addr, &len)) return NULL;
  int ret = bind(fd, (const struct sockaddr *)addr, (socklen_t)len);
  return result(env, ret, errno);
}

static napi_value Setsockopt(napi_env env, napi_callback_info info) {
  napi_value a[4];
  int32_t fd, level, name;
  void *value;
  size_t len;
  if (!get_args(env, info, 4, a) || !get_i32(env, a[0], &fd) || !get_i32(env, a[1], &level) || !get_i32(env, a[2], &name) ||
      !get_buffer(env, a[3], &value, &len))
    return NULL;
  int ret = setsockopt(fd, level, name, value, (socklen_t)len);
  return result(env, ret, errno);
}

/* Fills the buffer with the socket's address; returns the address length or -errno. */
static napi_value Getsockname(napi_env env, napi_callback_info info) {
  napi_value a[2];
  int32_t fd;
  void *addr;
  size_t len;
  if (!get_args(env, info, 2, a) || !get_i32(env, a[0], &fd) || !get_buffer(env, a[1], &addr, &len)) return NULL;
  socklen_t alen = (socklen_t)len;
  int ret = getsockname(fd, (struct sockaddr *)addr, &alen);
  return result(env, ret < 0 ? ret : (long)alen, errno);
}

/* Fills the buffer with the option's value (SO_PEERCRED: struct ucred); returns its length or -errno. */
static napi_value Getsockopt(napi_env env, napi_callback_info info) {
  napi_value a[4];
  int32_t fd, level, name;
  void *value;
  size_t len;
  if (!get_args(env, info, 4, a) || !get_i32(env, a[0], &fd) || !get_i32(env, a[1], &level) || !get_i32(env, a[2], &name) ||
      !get_buffer(env, a[3], &value, &len))
    return NULL;
  socklen_t vlen = (socklen_t)len;
  int ret = getsockopt(fd, level, name, value, &vlen);
  return result(env, ret < 0 ? ret : (long)vlen, errno);
}

static napi_value Mount(napi_env env, napi_callback_info info) {
  napi_value a[5];
  char *source = NULL, *target = NULL, *fstype = NULL, *data = NULL;
  int64_t flags;
  napi_value out = NULL;
  if (!get_args(env, info, 5, a)) return NULL;
  if (get_string(env, a[0], true, &source) && get_string(env, a[1], false, &target) && get_string(env, a[2], true, &fstype) &&
      (napi_get_value_int64(env, a[3], &flags) == napi_ok || fail(env, "expected an integer")) && get_string(env, a[4], true, &data)) {
    int ret = mount(source, target, fstype, (unsigned long)flags, data);
    out = result(env, ret, errno);
  }
  free(source);
  free(target);
  free(fstype);
  free(data);
  return out;
}

static napi_value Umount2(napi_env env, napi_callback_info info) {
  napi_value a[2];
  char *target;
  int32_t flags;
  if (!get_args(env, info, 2, a) || !get_i32(env, a[1], &flags) || !get_string(env, a[0], false, &target)) return NULL;
  int ret = umount2(target, flags);
  int err = errno;
  free(target);
  return result(env, ret, err);
}

/* Ends the process at once: no atexit handlers, no Node teardown. */
static napi_value Exit(napi_env env, napi_callback_info info) {
  napi_value a[1];
  int32_t code;
  if (!get_args(env, info, 1, a) || !get_i32(env, a[0], &code)) return NULL;
  _exit(code);
}

/* "ENOENT" for 2; undefined for a number the C library has no name for. */
static napi_value ErrnoName(napi_env env, napi_callback_info info) {
  napi_value a[1], out;
  int32_t err;
  if (!get_args(env, info, 1, a) || !get_i32(env, a[0], &err)) return NULL;
  const char *name = strerrorname_np(err);
  if (name == NULL) {
    napi_get_undefined(env, &out);
    return out;
  }
  napi_create_string_utf8(env, name, NAPI_AUTO_LENGTH, &out);
  return out;
}

static napi_value Sethostname(napi_env env, napi_callback_info info) {
  napi_value a[1];
  char *name;
  if (!get_args(env, info, 1, a) || !get_string(env, a[0], false, &name)) return NULL;
  int ret = sethostname(name, strlen(name));
  int err = errno;
  free(name);
  return result(env, ret, err);
}

/*
 * Default disposition for SIGPIPE (Node ignores it, and an exec'd program inherits ignored
 * signals) and an empty signal mask for the calling thread: what a program started from a
 * shell expects.
 */
static napi_value ResetSignals(napi_env env, napi_callback_info info) {
  (void)info;
  sigset_t none;
  sigemptyset(&none);
  if (signal(SIGPIPE, SIG_DFL) == SIG_ERR) return result(env, -1, errno);
  int ret = sigprocmask(SIG_SETMASK, &none, NULL);
  return result(env, ret, errno);
}

/* execvpe(file, argv, envp); returns -errno only when the exec failed. */
static napi_value Execvpe(napi_env env, napi_callback_info info) {
  napi_value a[3], out = NULL;
  char *file = NULL, **argv = NULL, **envp = NULL;
  if (!get_args(env, info, 3, a)) return NULL;
  if (get_string(env, a[0], false, &file) && get_string_array(env, a[1], &argv) && get_string_array(env, a[2], &envp)) {
    int ret = execvpe(file, argv, envp);
    out = result(env, ret, errno);
  }
  free(file);
  free_string_array(argv);
  free_string_array(envp);
  return out;
}

/*
 * nftables in-process: libnftables (the library the `nft` command is built on), opened with
 * dlopen so neither its headers nor the library are needed to build or load this addon. The
 * daemon's CNI workers use it instead of running an `nft` process per transaction (~15-30 ms
 * each on this machine). A fresh context per call (no cache kept between calls), and one call at
 * a time in the process (a mutex: the workers are threads, and the kernel serialises nftables
 * transactions anyway).
 * nftRun(commands, json, dryRun) -> [status, stdout, stderr], or null when libnftables is absent.
 */
struct nft_ctx;
static struct {
  struct nft_ctx *(*ctx_new)(uint32_t);
  void (*ctx_free)(struct nft_ctx *);
  void (*set_dry_run)(struct nft_ctx *, bool);
  void (*output_set_flags)(struct nft_ctx *, unsigned int);
  int (*buffer_output)(struct nft_ctx *);
  int (*buffer_error)(struct nft_ctx *);
  const char *(*get_output)(struct nft_ctx *);
  const char *(*get_error)(struct nft_ctx *);
  int (*run)(struct nft_ctx *, const char *);
} nft;
static int nft_state; /* 0 not tried, 1 loaded, -1 unavailable */
static pthread_mutex_t nft_lock = PTHREAD_MUTEX_INITIALIZER;
#define NFT_CTX_OUTPUT_JSON (1u << 4)

static bool nft_load(void) {
  if (nft_state != 0) return nft_state > 0;
  nft_state = -1;
  void *lib = dlopen("libnftables.so.1", RTLD_NOW | RTLD_LOCAL);
  if (lib == NULL) return false;
#define NFT_SYM(field, name) \
  if ((*(void **)&nft.field = dlsym(lib, name)) == NULL) return false;
  NFT_SYM(ctx_new, "nft_ctx_new")
  NFT_SYM(ctx_free, "nft_ctx_free")
  NFT_SYM(set_dry_run, "nft_ctx_set_dry_run")
  NFT_SYM(output_set_flags, "nft_ctx_output_set_flags")
  NFT_SYM(buffer_output, "nft_ctx_buffer_output")
  NFT_SYM(buffer_error, "nft_ctx_buffer_error")
  NFT_SYM(get_output, "nft_ctx_get_output_buffer")
  NFT_SYM(get_error, "nft_ctx_get_error_buffer")
  NFT_SYM(run, "nft_run_cmd_from_buffer")
#undef NFT_SYM
  nft_state = 1;
  return true;
}

static napi_value NftRun(napi_env env, napi_callback_info info) {
  napi_value a[3], out = NULL;
  char *commands = NULL;
  bool json = false, dry = false;
  if (!get_args(env, info, 3, a) || !get_string(env, a[0], false, &commands)) return NULL;
  if (napi_get_value_bool(env, a[1], &json) != napi_ok || napi_get_value_bool(env, a[2], &dry) != napi_ok) {
    free(commands);
    fail(env, "expected booleans");
    return NULL;
  }
  pthread_mutex_lock(&nft_lock);
  struct nft_ctx *ctx = nft_load() ? nft.ctx_new(0) : NULL;
  if (ctx == NULL) {
    pthread_mutex_unlock(&nft_lock);
    free(commands);
    napi_get_null(env, &out);
    return out;
  }
  if (json) nft.output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
  nft.set_dry_run(ctx, dry);
  nft.buffer_output(ctx);
  nft.buffer_error(ctx);
  int status = nft.run(ctx, commands) == 0 ? 0 : 1;
  napi_value items[3];
  napi_create_int32(env, status, &items[0]);
  napi_create_string_utf8(env, nft.get_output(ctx), NAPI_AUTO_LENGTH, &items[1]);
  napi_create_string_utf8(env, nft.get_error(ctx), NAPI_AUTO_LENGTH, &items[2]);
  nft.ctx_free(ctx);
  pthread_mutex_unlock(&nft_lock);
  free(commands);
  napi_create_array_with_length(env, 3, &out);
  for (uint32_t i = 0; i < 3; i++) napi_set_element(env, out, i, items[i]);
  return out;
}

NAPI_MODULE_INIT() {
  static const struct {
    const char *name;
    napi_callback fn;
  } functions[] = {
      {"socket", Socket},       {"bind", Bind},       {"setsockopt", Setsockopt},     {"getsockname", Getsockname}, {"getsockopt", Getsockopt},
      {"close", Close},         {"setns", Setns},     {"unshare", Unshare},           {"mount", Mount},
      {"umount2", Umount2},     {"exit", Exit},                 {"errnoName", ErrnoName},
      {"sethostname", Sethostname}, {"fcntl", Fcntl}, {"resetSignals", ResetSignals}, {"execvpe", Execvpe},
      {"nftRun", NftRun},
  };
  for (size_t i = 0; i < sizeof functions / sizeof functions[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, functions[i].name, NAPI_AUTO_LENGTH, functions[i].fn, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, functions[i].name, fn) != napi_ok)
      return NULL;
  }
  if (!udp_batch_register(env, exports)) return NULL;
  return exports;
}
