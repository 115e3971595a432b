#!/usr/bin/env bash
# The README's main job: set up the machine (Debian packages, npm ci, build) and show the suite
# working end to end on the embedded (SQLite) store:
#   daemon -> network -> web server sandbox with a published port -> client sandbox that reaches
#   it by name -> the published port from the host -> the metrics that moved -> clean up.
# Every step prints what it does and fails loudly (set -e, and explicit checks); cleanup runs
# on any exit. State, run and CNI config dirs are private temp dirs, so the demo never touches
# a Shoal installation on this machine; set DEMO_KEEP=1 to keep them for a look afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

step() { printf '\n==> %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }
die() { printf '\ndemo FAILED: %s\n' "$*" >&2; exit 1; }

step "setting up (Debian packages, npm ci, build)"
bash scripts/setup.sh
source scripts/node-env.sh

SHOAL="$ROOT/dist/bin/shoal"
WORK=$(mktemp -d /tmp/shoal-demo.XXXXXX)
export SHOAL_STATE_DIR="$WORK/state" SHOAL_RUN_DIR="$WORK/run"
CONF_DIR="$WORK/cni"
NET="demo$$"
PORT=${DEMO_PORT:-18080}
METRICS=${DEMO_METRICS:-127.0.0.1:19590}
DAEMON_PID=""
WEB=""

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  step "cleaning up"
  if [[ -n $WEB ]]; then "$SHOAL" stop -t 2 "$WEB" >/dev/null 2>&1 || echo "stop $WEB failed" >&2; fi
  "$SHOAL" network rm --force "$NET" >/dev/null 2>&1 || true
  "$SHOAL" gc >/dev/null 2>&1 || true
  if [[ -n $DAEMON_PID ]]; then kill "$DAEMON_PID" 2>/dev/null && wait "$DAEMON_PID" 2>/dev/null || true; fi
  if [[ ${DEMO_KEEP:-0} = 1 ]]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
  if ((rc == 0)); then step "done: every step worked"; else echo "demo exited with status $rc" >&2; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

step "shoal version"
run "$SHOAL" version

step "state in $WORK (SHOAL_STATE_DIR, SHOAL_RUN_DIR), conflists in $CONF_DIR"

step "starting the daemon (DNS on every network's gateway, metrics on http://$METRICS/metrics)"
"$SHOAL" daemon --metrics-addr "$METRICS" --log-level warn >"$WORK/daemon.log" 2>&1 &
DAEMON_PID=$!
echo "daemon pid $DAEMON_PID, log $WORK/daemon.log"
for _ in $(seq 1 100); do
  timeout 5 busybox wget -qO- "http://$METRICS/metrics" >/dev/null 2>&1 && break
  kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$WORK/daemon.log" >&2; die "the daemon exited"; }
  sleep 0.1
done
timeout 5 busybox wget -qO- "http://$METRICS/metrics" >"$WORK/metrics.before" || die "no metrics from the daemon"

step "creating network $NET (a free private subnet is picked)"
run "$SHOAL" network create --cni-conf-dir "$CONF_DIR" "$NET"
run "$SHOAL" network ls
echo "conflist written for podman's CNI backend:"
run cat "$CONF_DIR/$NET.conflist"

step "starting a web server sandbox 'web' (busybox httpd), published on host port $PORT"
mkdir -p "$WORK/www"
echo "hello from the web sandbox" >"$WORK/www/index.html"
WEB=web$$
run "$SHOAL" run -d --network "$NET" --name "$WEB" --network-alias web -p "$PORT:80" -- busybox httpd -f -v -p 80 -h "$WORK/www"
run "$SHOAL" ps
run "$SHOAL" port "$WEB"

step "a client sandbox fetches http://web/ by name (resolved by the Shoal daemon)"
out=$("$SHOAL" run --network "$NET" --name client$$ -- sh -c 'cat /etc/resolv.conf; nslookup web; timeout 5 wget -qO- http://web/') || die "the client sandbox could not fetch http://web/"
printf '%s\n' "$out"
grep -q "hello from the web sandbox" <<<"$out" || die "the client got something else than the page"

step "the published port from the host: http://127.0.0.1:$PORT/"
page=""
for _ in 1 2 3 4 5; do page=$(timeout 5 busybox wget -qO- "http://127.0.0.1:$PORT/" 2>/dev/null) && break; sleep 0.2; done
printf '%s\n' "$page"
[[ $page == "hello from the web sandbox" ]] || die "127.0.0.1:$PORT did not answer with the page"

step "metrics that moved (shoal_*, before -> after)"
timeout 5 busybox wget -qO- "http://$METRICS/metrics" >"$WORK/metrics.after" || die "no metrics from the daemon"
# Histogram buckets are left out (their _count says the same in one line).
moved=$(awk 'NR==FNR { if ($1 ~ /^shoal_/) before[$1]=$2; next }
  $1 ~ /_bucket\{/ { next }
  $1 ~ /^shoal_/ && before[$1] != $2 { printf "%-80s %s -> %s\n", $1, (($1 in before) ? before[$1] : "-"), $2 }' \
  "$WORK/metrics.before" "$WORK/metrics.after")
[[ -n $moved ]] || die "no shoal_ metric moved"
printf '%s\n' "$moved"

step "the web sandbox's log"
run "$SHOAL" logs "$WEB"

step "stopping the web sandbox and removing the network"
run "$SHOAL" stop -t 2 "$WEB"
WEB=""
run "$SHOAL" network rm "$NET"
run "$SHOAL" ps -a
