/*
 * dist/cni/<type>: the CNI executable a runtime runs. It hands the request (the whole
 * environment and stdin) to the running daemon over <SHOAL_RUN_DIR or /run/shoal>/cni.sock and
 * writes the daemon's answer (stdout, stderr, exit status) as its own, so a container start pays
 * a C process start instead of a Node one. Protocol: src/daemon/cni-protocol.ts.
 *
 * When no daemon of this build answers (SHOAL_CNI_FORWARD=0, no socket, refused, a socket not
 * owned by root, a greeting of another build or from other namespaces, no greeting within
 * GREETING_TIMEOUT_MS) it execs
 * the Node plugin <dir of this file>/shoal-node/<type> with the same argv, environment and the
 * untouched stdin: same behaviour, only slower. Nothing of stdin is read before that decision.
 *
 * Once the request has been sent the daemon may have acted on it; losing the daemon after that
 * point (killed, socket closed, no answer within its timeout + REPLY_SLACK_MS) is CNI error 11,
 * "try again": the runtime then DELs, which is idempotent on both paths.
 *
 * Compiled by scripts/build.mjs with -DSHOAL_BUILD_ID="<hash of the daemon-side plugin code>".
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#ifndef SHOAL_BUILD_ID
#error "SHOAL_BUILD_ID must be defined (scripts/build.mjs does)"
#endif

#define PROTOCOL "SHOAL-CNI/1"
#define GREETING_TIMEOUT_MS 2000
#define SEND_TIMEOUT_MS 5000
#define REPLY_SLACK_MS 5000
#define VERSION_STDIN_WAIT_MS 1000
#define MAX_STDIN (16u << 20)
#define MAX_ENV (1u << 20)
#define MAX_REPLY (32u << 20)
#define MAX_LINE 256

extern char **environ;

static char self_dir[PATH_MAX];
static char plugin_type[64];
static char **saved_argv;

/* ---- small helpers -------------------------------------------------------------------- */

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = write(fd, buf, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        poll(&p, 1, 100);
        continue;
      }
      return -1;
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static int send_all(int fd, const char *buf, size_t len) {
  while (len > 0) {
    ssize_t n = send(fd, buf, len, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -1; /* EAGAIN here is SO_SNDTIMEO expiring */
    }
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

static void set_timeout(int fd, int option, long long ms) {
  struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, option, &tv, sizeof tv);
}

/* Reads exactly len bytes before deadline_ms (monotonic); -1 on EOF, error or deadline. A socket
 * read with SO_RCVTIMEO is not restarted after a signal (signal(7)): EINTR loops to the deadline. */
static int recv_exact(int fd, char *buf, size_t len, long long deadline_ms) {
  while (len > 0) {
    long long left = deadline_ms - now_ms();
    if (left <= 0) return -1;
    set_timeout(fd, SO_RCVTIMEO, left);
    ssize_t n = recv(fd, buf, len, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return -1;
    buf += n;
    len -= (size_t)n;
  }
  return 0;
}

/* One '\n'-terminated line (without it) of at most MAX_LINE-1 bytes. */
static int recv_line(int fd, char *line, long long deadline_ms) {
  for (size_t i = 0; i < MAX_LINE - 1; i++) {
    if (recv_exact(fd, &line[i], 1, deadline_ms) < 0) return -1;
    if (line[i] == '\n') {
      line[i] = '\0';
      return 0;
    }
  }
  return -1;
}

/* ---- the CNI error this executable prints itself ------------------------------------------ */

static const char *const VERSIONS[] = {"0.3.0", "0.3.1", "0.4.0", "1.0.0", "1.1.0"};

/* The config's cniVersion when it is one Shoal speaks, else the latest: what the skel does. */
static const char *error_version(const char *config, size_t len) {
  const char *key = "\"cniVersion\"";
  const char *p = config ? memmem(config, len, key, strlen(key)) : NULL;
  if (p) {
    const char *end = config + len;
    p += strlen(key);
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == ':')) p++;
    if (p < end && *p == '"') {
      p++;
      for (size_t i = 0; i < sizeof VERSIONS / sizeof *VERSIONS; i++) {
        size_t n = strlen(VERSIONS[i]);
        if ((size_t)(end - p) > n && memcmp(p, VERSIONS[i], n) == 0 && p[n] == '"') return VERSIONS[i];
      }
    }
  }
  return "1.1.0";
}

static void json_escape_into(char *out, size_t cap, const char *text) {
  size_t o = 0;
  for (const char *s = text; *s && o + 7 < cap; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      out[o++] = '\\';
      out[o++] = (char)c;
    } else if (c < 0x20) {
      o += (size_t)snprintf(out + o, cap - o, "\\u%04x", c);
    } else {
      out[o++] = (char)c;
    }
  }
  out[o] = '\0';
}

static int cni_error(int code, const char *config, size_t config_len, const char *fmt, ...) {
  char msg[1024], escaped[2048], json[2400];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  json_escape_into(escaped, sizeof escaped, msg);
  int n = snprintf(json, sizeof json, "{\"cniVersion\":\"%s\",\"code\":%d,\"msg\":\"%s\"}\n", error_version(config, config_len), code, escaped);
  if (n > 0) write_all(1, json, (size_t)n < sizeof json ? (size_t)n : sizeof json - 1);
  char line[1200];
  int m = snprintf(line, sizeof line, "%s: %s\n", plugin_type, msg);
  if (m > 0) write_all(2, line, (size_t)m < sizeof line ? (size_t)m : sizeof line - 1);
  return 1;
}

/* ---- fallback: today's Node plugin ---------------------------------------------------------- */

static int exec_node_plugin(void) {
  char file[PATH_MAX];
  int n = snprintf(file, sizeof file, "%s/shoal-node/%s", self_dir, plugin_type);
  if (n < 0 || (size_t)n >= sizeof file) return cni_error(5, NULL, 0, "failed to execute the Node plugin: its path is too long");
  saved_argv[0] = file;
  execve(file, saved_argv, environ);
  return cni_error(5, NULL, 0, "failed to execute the Node plugin %s: %s", file, strerror(errno));
}

/* ---- talking to the daemon ------------------------------------------------------------------ */

/*
 * A plugin acts in its caller's namespaces: the network namespace is "the host" it attaches
 * containers to, and CNI_NETNS and every path are resolved in its mount and pid namespaces. A
 * daemon elsewhere (a runtime under `ip netns exec`, a node namespace of a test cluster) would
 * act on the wrong host, so only a daemon in the same three namespaces is handed the request.
 */
static int same_namespaces(const unsigned long long daemon_ns[3]) {
  static const char *const files[3] = {"/proc/self/ns/net", "/proc/self/ns/mnt", "/proc/self/ns/pid"};
  for (int i = 0; i < 3; i++) {
    struct stat st;
    if (stat(files[i], &st) < 0 || (unsigned long long)st.st_ino != daemon_ns[i]) return 0;
  }
  return 1;
}

/* A connected socket to a root-owned daemon of this build, or -1 (then: fall back). */
static int connect_daemon(long long *reply_timeout_ms) {
  const char *forward = getenv("SHOAL_CNI_FORWARD");
  if (forward && strcmp(forward, "0") == 0) return -1;
  const char *run_dir = getenv("SHOAL_RUN_DIR");
  if (!run_dir || !*run_dir) run_dir = "/run/shoal";
  struct sockaddr_un addr = {.sun_family = AF_UNIX};
  int n = snprintf(addr.sun_path, sizeof addr.sun_path, "%s/cni.sock", run_dir);
  if (n < 0 || (size_t)n >= sizeof addr.sun_path) return -1;

  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  set_timeout(fd, SO_SNDTIMEO, SEND_TIMEOUT_MS);
  int rc;
  do rc = connect(fd, (struct sockaddr *)&addr, sizeof addr);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) goto fail;

  /* Only a daemon running as root may be handed a request. */
  struct ucred cred;
  socklen_t len = sizeof cred;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != 0) goto fail;

  /* "SHOAL-CNI/1 <build> <timeout ms> <net ns> <mount ns> <pid ns>" (namespace inodes) */
  char line[MAX_LINE], proto[32], build[96];
  long long timeout_ms;
  unsigned long long ns[3];
  if (recv_line(fd, line, now_ms() + GREETING_TIMEOUT_MS) < 0) goto fail;
  if (sscanf(line, "%31s %95s %lld %llu %llu %llu", proto, build, &timeout_ms, &ns[0], &ns[1], &ns[2]) != 6) goto fail;
  if (strcmp(proto, PROTOCOL) != 0 || strcmp(build, SHOAL_BUILD_ID) != 0) goto fail;
  if (timeout_ms < 1 || timeout_ms > 24LL * 3600 * 1000) goto fail;
  if (!same_namespaces(ns)) goto fail;
  *reply_timeout_ms = timeout_ms + REPLY_SLACK_MS;
  return fd;
fail:
  close(fd);
  return -1;
}

/* stdin as the skel reads it: nothing from a terminal; VERSION waits at most 1 s on a pipe. */
static char *read_stdin(size_t *out_len, int optional, int *too_big) {
  struct stat st;
  *out_len = 0;
  *too_big = 0;
  if (fstat(0, &st) == 0 && S_ISCHR(st.st_mode)) return calloc(1, 1);
  int wait = optional && (fstat(0, &st) != 0 || S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
  long long deadline = now_ms() + VERSION_STDIN_WAIT_MS;
  size_t cap = 64 * 1024, len = 0;
  char *buf = malloc(cap + 1);
  if (!buf) return NULL;
  for (;;) {
    if (wait) {
      long long left = deadline - now_ms();
      struct pollfd p = {.fd = 0, .events = POLLIN};
      if (left <= 0) { len = 0; break; } /* nobody is sending a config */
      int r = poll(&p, 1, (int)left);
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) { len = 0; break; }
    }
    if (len == cap) {
      if (cap >= MAX_STDIN) { *too_big = 1; free(buf); return NULL; }
      cap *= 2;
      char *bigger = realloc(buf, cap + 1);
      if (!bigger) { free(buf); return NULL; }
      buf = bigger;
    }
    ssize_t n = read(0, buf + len, cap - len);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) { free(buf); return NULL; }
    if (n == 0) break;
    len += (size_t)n;
  }
  buf[len] = '\0';
  *out_len = len;
  return buf;
}

/* The environment as NUL-terminated KEY=VALUE entries. */
static char *pack_environ(size_t *out_len) {
  size_t total = 0;
  for (char **e = environ; *e; e++) total += strlen(*e) + 1;
  if (total > MAX_ENV) return NULL;
  char *buf = malloc(total + 1);
  if (!buf) return NULL;
  size_t o = 0;
  for (char **e = environ; *e; e++) {
    size_t n = strlen(*e) + 1;
    memcpy(buf + o, *e, n);
    o += n;
  }
  *out_len = o;
  return buf;
}

static int forward(int fd, long long reply_timeout_ms) {
  const char *command = getenv("CNI_COMMAND");
  size_t config_len = 0, env_len = 0;
  int too_big = 0;
  char *config = read_stdin(&config_len, command && strcmp(command, "VERSION") == 0, &too_big);
  if (!config && too_big) return cni_error(5, NULL, 0, "cannot read the network config from stdin: larger than %u bytes", MAX_STDIN);
  if (!config) return cni_error(5, NULL, 0, "cannot read the network config from stdin: %s", strerror(errno));
  char *env = pack_environ(&env_len);
  if (!env) return cni_error(4, config, config_len, "the environment is larger than %u bytes", MAX_ENV);

  char header[MAX_LINE];
  int n = snprintf(header, sizeof header, "REQ %s %zu %zu\n", plugin_type, env_len, config_len);
  if (n < 0 || (size_t)n >= sizeof header) return cni_error(5, config, config_len, "request header too long");
  if (send_all(fd, header, (size_t)n) < 0 || send_all(fd, env, env_len) < 0 || send_all(fd, config, config_len) < 0) {
    return cni_error(11, config, config_len, "the Shoal daemon went away while receiving the request (%s); try again", strerror(errno));
  }

  /* "RES <exit status> <stdout bytes> <stderr bytes>", then stdout, then stderr. */
  long long deadline = now_ms() + reply_timeout_ms;
  char line[MAX_LINE];
  int status;
  size_t out_len, err_len;
  if (recv_line(fd, line, deadline) < 0) {
    return cni_error(11, config, config_len, "the Shoal daemon did not answer (it stopped, or exceeded its timeout); try again");
  }
  if (sscanf(line, "RES %d %zu %zu", &status, &out_len, &err_len) != 3 || status < 0 || status > 255 || out_len > MAX_REPLY || err_len > MAX_REPLY) {
    return cni_error(11, config, config_len, "the Shoal daemon sent an unreadable answer; try again");
  }
  char *reply = malloc(out_len + err_len + 1);
  if (!reply) return cni_error(5, config, config_len, "out of memory for the daemon's answer");
  if (recv_exact(fd, reply, out_len + err_len, deadline) < 0) {
    return cni_error(11, config, config_len, "the Shoal daemon's answer was cut short; try again");
  }
  close(fd);
  if (err_len) write_all(2, reply + out_len, err_len);
  if (out_len && write_all(1, reply, out_len) < 0) return 1;
  return status;
}

/* dir and basename of this executable (/proc/self/exe: a runtime runs it by absolute path, but
 * `ip netns exec` and tests may not). */
static int locate_self(const char *argv0) {
  char exe[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
  if (n <= 0) {
    if (!argv0 || strlen(argv0) >= sizeof exe) return -1;
    strcpy(exe, argv0);
  } else {
    exe[n] = '\0';
  }
  char *slash = strrchr(exe, '/');
  const char *base = slash ? slash + 1 : exe;
  if (strlen(base) >= sizeof plugin_type || strncmp(base, "shoal-", 6) != 0) return -1;
  for (const char *c = base; *c; c++) {
    if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-')) return -1;
  }
  strcpy(plugin_type, base);
  if (slash) {
    *slash = '\0';
    strcpy(self_dir, exe[0] ? exe : "/");
  } else {
    strcpy(self_dir, ".");
  }
  return 0;
}

int main(int argc, char **argv) {
  (void)argc;
  saved_argv = argv;
  if (locate_self(argv[0]) < 0) {
    strcpy(plugin_type, "shoal");
    return cni_error(5, NULL, 0, "cannot tell which Shoal plugin this is (the executable must be named shoal-<type>)");
  }
  long long reply_timeout_ms = 0;
  int fd = connect_daemon(&reply_timeout_ms);
  if (fd < 0) return exec_node_plugin();
  return forward(fd, reply_timeout_ms);
}
